# A tuner worker in plain Python (standard library only): lease, evaluate, complete.
import json, math, os, time, urllib.request as rq
SERVER, STUDY = os.environ.get("TUNER_SERVER", "http://127.0.0.1:8470"), os.environ["STUDY"]
def post(path, body):
    req = rq.Request(SERVER + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with rq.urlopen(req) as r:
        return r.status, r.headers.get("Retry-After"), (json.loads(r.read() or b"null"))
while True:
    status, retry, answer = post(f"/studies/{STUDY}/ask", {"worker": f"python-{os.getpid()}"})
    if status == 204:  # 204 + Retry-After: come back later; plain 204: the study is done
        if retry: time.sleep(float(retry)); continue
        break
    p, token = answer["trial"]["params"], answer["lease"]["token"]
    loss = (p["x2"] - 5.1 / (4 * math.pi**2) * p["x1"]**2 + 5 / math.pi * p["x1"] - 6)**2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(p["x1"]) + 10
    post(f"/trials/{answer['trial']['id']}/complete", {"lease_token": token, "metrics": {"loss": loss}})
