import json, re, sys
TS = re.compile(r'20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z?')
def norm_json(o):
    if isinstance(o, dict):
        return {k: ("X" if k in ("fit_seconds","seconds","created_at","total","features","metrics.json","report.html") and isinstance(v,(int,float,str)) else norm_json(v)) for k, v in o.items()}
    if isinstance(o, list):
        return [norm_json(v) for v in o]
    return o
def norm(path):
    s = open(path, encoding="utf-8", errors="replace").read()
    if path.endswith(".json"):
        try: return json.dumps(norm_json(json.loads(s)), indent=1)
        except Exception: pass
    s = TS.sub("TS", s)
    s = re.sub(r'<td class="num">[0-9.]+</td></tr>', '<td class="num">SEC</td></tr>', s)
    s = re.sub(r'\b[0-9]+\.[0-9]+ ?s\b', 'SECs', s)
    return s
a, b = norm(sys.argv[1]), norm(sys.argv[2])
if a == b: print("SAME-after-masking-times"); sys.exit(0)
import difflib
d = list(difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=0))
print(f"DIFF ({len(d)} diff lines after masking times); first:", *[l[:200] for l in d[2:8]], sep="\n  ")
