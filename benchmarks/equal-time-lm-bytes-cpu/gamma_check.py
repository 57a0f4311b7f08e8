import torch, time, layerwise_bench as bench
from layerwise_bench._tuned import prepare_methods
from dataclasses import replace
torch.set_num_threads(1)
w=bench.get_workload('lm-bytes'); cfg=bench.RunConfig(dataset='stdlib', workload='lm-bytes', epochs=1, subset=200*32)
data=w.load(cfg,None,False,'cpu')
(m,),lrs,*_=prepare_methods(['locoprop-transformer'],'stdlib',workload='lm-bytes')
(a,),alr,*_=prepare_methods(['adamw'],'stdlib',workload='lm-bytes')
for name,meth,lr in [('adamw',a,3e-3*3.16),('loco g100',m,1e-3),('loco g1000',replace(m,hparams={**m.hparams,'gamma':1000.0}),1e-3),('loco g3200',replace(m,hparams={**m.hparams,'gamma':3200.0}),1e-3),('loco g10000',replace(m,hparams={**m.hparams,'gamma':10000.0}),1e-3)]:
    t=time.time(); r=bench.train_method(meth, lr, data, cfg, progress=False)[-1]
    print(name, round(r['train_loss'],3), round(r['test_loss'],3), round(time.time()-t,1), flush=True)
