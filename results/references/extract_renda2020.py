# Extracts one-shot unstructured ResNet-20/56 CIFAR-10 numbers from
# lottery-ticket/rewinding-iclr20-public @ 273e67d8b4f99d973083495c8a617758e1f9b60a, vision/plot/*.pkl
# (pickles inspected with pickletools first: only pandas/numpy globals).
import sys, pandas as pd, numpy as np
d = sys.argv[1] if len(sys.argv) > 1 else '/tmp/renda'
p = pd.read_pickle(f'{d}/pruned_dataframe.pkl'); b = pd.read_pickle(f'{d}/bases_dataframe.pkl')
NAME = {'finetune': 'fine-tune (lr 0.001)', 'lr_finetune': 'lr rewinding', 'lottery': 'weight rewinding',
        'lr_lottery': 'low-lr weight rewinding', 'reinit': 'reinit (label t meaningless, see notes)'}
q = p[(p.prune_method == 'Unstructured') & (~p.is_iterative) & p.network.isin(['resnet20', 'resnet56'])].copy()
q['density'] = q.density.round(4)
g = q.groupby(['network', 'density', 'retrain_method', 'retrain_time'])
t = pd.DataFrame({'mean': g.test_acc.mean() * 100, 'std': g.test_acc.std(ddof=1) * 100, 'n': g.test_acc.size(),
                  'median': g.test_acc.median() * 100, 'min': g.test_acc.min() * 100, 'max': g.test_acc.max() * 100,
                  'val_mean': g.val_acc.mean() * 100}).reset_index()
t.to_csv('/work/notes/renda2020_oneshot_resnet20_56_all.csv', index=False, float_format='%.4f')
for n in ['resnet20', 'resnet56']:
    r = b[b.network == n]; u = r[['test_acc', 'val_acc']].drop_duplicates()
    print(n, 'dense rows', len(r), 'mean %.3f std %.3f' % (r.test_acc.mean()*100, r.test_acc.std()*100),
          '| unique (test,val) pairs', len(u), 'mean %.3f std %.3f' % (u.test_acc.mean()*100, u.test_acc.std()*100),
          '| val mean %.3f' % (r.val_acc.mean()*100))
pd.set_option('display.width', 250); pd.set_option('display.max_rows', 2000)
sel = t[t.retrain_time.isin([10, 50, 90, 182])]
for n in ['resnet20', 'resnet56']:
    for m in ['finetune', 'lr_finetune', 'lottery', 'lr_lottery', 'reinit']:
        s = sel[(sel.network == n) & (sel.retrain_method == m)]
        piv = s.assign(cell=s.apply(lambda r: '%.2f ± %.2f' % (r['mean'], r['std']), axis=1)).pivot(index='density', columns='retrain_time', values='cell').sort_index(ascending=False)
        print('\n###', n, m); print(piv.to_string())

# ---- CSV in the requested column layout ----
LAB = {'finetune': 'fine-tune', 'lr_finetune': 'lr-rewind', 'lottery': 'weight-rewind',
       'lr_lottery': 'low-lr-weight-rewind', 'reinit': 'reinit'}
SRC = 'renda2020_repo@273e67d8'
SPLIT = 'cifar10-test-8000of10000(other-2000=val)'
PRUN = 'all-conv(incl-first-conv+1x1-proj)+final-dense;global-magnitude;no-bn/bias'
HDR = 'source,table_or_file,network,dataset,sparsity_pct,density,retraining,retrain_epochs,metric,value,std,n_trials,test_split,accuracy_at,prunable'
def rows(df, metrics=('mean',)):
    out = []
    for _, r in df.iterrows():
        for m in metrics:
            out.append(','.join(map(str, [SRC, 'vision/plot/pruned_dataframe.pkl', r.network, 'cifar10',
                '%.2f' % (100 - 100 * r.density), '%.4f' % r.density, LAB[r.retrain_method], int(r.retrain_time),
                'test_acc_' + m, '%.3f' % r[m], ('%.3f' % r['std']) if m == 'mean' else '', int(r.n), SPLIT, 'final', PRUN])))
    return out
dense = []
for n in ['resnet20', 'resnet56']:
    r = b[b.network == n]
    dense.append(','.join(map(str, [SRC, 'vision/plot/bases_dataframe.pkl', n, 'cifar10', '0.00', '1.0000', 'none(dense)', 182,
        'test_acc_mean', '%.3f' % (r.test_acc.mean()*100), '%.3f' % (r.test_acc.std()*100), len(r), SPLIT, 'final', PRUN])))
order = {'finetune': 0, 'lr_finetune': 1, 'lottery': 2, 'reinit': 3, 'lr_lottery': 4}
t2 = t.assign(o=t.retrain_method.map(order)).sort_values(['network', 'density', 'o', 'retrain_time'], ascending=[True, False, True, True])
with open('/work/notes/renda2020_oneshot_requested_layout.csv', 'w') as f:
    f.write('\n'.join([HDR] + dense + rows(t2, ('mean', 'median'))) + '\n')
main = t2[(t2.density == 0.1074)]
nb = t2[t2.density.isin([0.2097, 0.1678, 0.1342]) & t2.retrain_time.isin([10, 50, 90, 182]) & t2.retrain_method.isin(['finetune', 'lr_finetune', 'lottery'])]
with open('/work/notes/renda2020_block.csv', 'w') as f:
    f.write('\n'.join([HDR] + dense + rows(main) + rows(nb)) + '\n')
