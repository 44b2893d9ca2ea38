"""No import cycles between the modules of a crate's library (`cargo xtask lint`).

Reads every .rs file under SRC (bin/ excepted: binaries sit on top of the library), resolves the
`use crate::`, `use super::`, `use self::` and inline `crate::`/`super::` paths outside `mod tests` to
the module (file) they name, and fails listing every cycle. Prints the folder-level edges too, so the
layering can be read at a glance. Usage: module_cycles.py SRC
"""
import re,os,sys,glob,collections
root=sys.argv[1]
files=[f for f in glob.glob(root+'/**/*.rs',recursive=True) if '/bin/' not in f]
def modpath(f):
    r=os.path.relpath(f,root)[:-3].split('/')
    if r[-1] in ('mod','lib'): r=r[:-1]
    return '::'.join(r)
mods={modpath(f):f for f in files}
def resolve(path):
    parts=path.split('::')
    for n in range(len(parts),0,-1):
        c='::'.join(parts[:n])
        if c in mods: return c
    return None
def strip_tests(s):
    i=s.find('#[cfg(test)]\nmod tests')
    return s if i<0 else s[:i]
def expand_use(s):
    # expand nested use crate::{a::{b,c}, d} into paths
    out=[]
    for m in re.finditer(r'use (crate|super|self)::', s):
        start=m.end(); depth=0; i=start
        while i<len(s):
            if s[i]=='{': depth+=1
            elif s[i]=='}': depth-=1
            elif s[i]==';' and depth==0: break
            i+=1
        body=s[start:i]
        def walk(prefix, b):
            b=b.strip()
            if b.startswith('{') and b.endswith('}'):
                b=b[1:-1]
                depth=0; cur=''; items=[]
                for ch in b:
                    if ch=='{': depth+=1
                    if ch=='}': depth-=1
                    if ch==',' and depth==0: items.append(cur); cur=''
                    else: cur+=ch
                items.append(cur)
                for it in items:
                    if it.strip(): walk(prefix, it)
            else:
                mm=re.match(r'([A-Za-z_0-9:]*?)(::)?(\{.*\})$', b, re.S)
                if mm and mm.group(3):
                    walk(prefix+[p for p in mm.group(1).split('::') if p], mm.group(3))
                else:
                    out.append((m.group(1), prefix+[p for p in re.split(r'\s+as\s+',b)[0].split('::') if p]))
        walk([], body)
    for m in re.finditer(r'(?<![A-Za-z_:])(crate|super)::([A-Za-z_0-9:]+)', s):
        out.append((m.group(1), m.group(2).split('::')))
    return out
edges=collections.defaultdict(set)
for mp,f in mods.items():
    s=strip_tests(open(f).read())
    for kind,parts in expand_use(s):
        if kind=='crate': base=[]
        elif kind=='super':
            cur=mp.split('::') if mp else []
            isdir=os.path.basename(f) in('mod.rs','lib.rs')
            base=cur[:-1] if not isdir else cur[:-1]
            # super of a file module x::y is x; super of dir module x::y (mod.rs) is x
            while parts and parts[0]=='super': base=base[:-1]; parts=parts[1:]
        else:
            base=mp.split('::') if mp else []
        t=resolve('::'.join(base+parts))
        if t is not None and t!=mp and not mp.startswith(t+'::') and not (t=='' ):
            edges[mp].add(t)
# cycles (file level)
sys.setrecursionlimit(10000)
index={};low={};st=[];on=set();sccs=[];c=[0]
def sc(v):
    index[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
    for w in edges.get(v,()):
        if w not in index: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],index[w])
    if low[v]==index[v]:
        comp=[]
        while True:
            w=st.pop();on.discard(w);comp.append(w)
            if w==v:break
        if len(comp)>1: sccs.append(comp)
for v in list(mods):
    if v not in index: sc(v)
top=collections.defaultdict(set)
for a,bs in edges.items():
    for b in bs:
        ta=a.split('::')[0]; tb=b.split('::')[0]
        if ta!=tb: top[ta].add(tb)
for k in sorted(top): print('  %s uses %s' % (k, ', '.join(sorted(top[k]))))
if sccs:
    for c in sccs:
        print('import cycle: ' + ' -> '.join(sorted(c)))
    sys.exit(1)
print('no import cycles among %d modules' % len(mods))
