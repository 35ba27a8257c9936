#!/usr/bin/env python3
"""Monitoring end to end, against a real Prometheus server (Debian's prometheus 2.42).

Starts a coordinator, two CPU workers and Prometheus (1 s scrapes, loopback, temporary
storage, deploy/prometheus/alerts.yml loaded), runs a world_size-2 job, then checks through
Prometheus' HTTP API that:
  * `promtool check metrics` is clean on every endpoint;
  * every expression of deploy/grafana/polytune.json evaluates, and returns at least one
    series, except those that can only have data elsewhere (EXPECTED_EMPTY, with why);
  * every alert rule evaluates without error;
  * the job's per-job series disappear once its grace period has passed.
Exit code 77 (CTest: skipped) when prometheus or promtool is not installed, saying so.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Panels whose series exist only in situations this CPU test cannot create.
EXPECTED_EMPTY = {
    "polytune_worker_gpu_memory_used_bytes": "CUDA workers only (this test's workers are CPU)",
}
GRACE_SECONDS = 12


def free_ports(n):
    """n distinct free ports (all held open while picking, so none is handed out twice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def query(prom, expr):
    body = json.loads(get(f"http://{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
    if body.get("status") != "success":
        raise AssertionError(f"{expr}: {body}")
    return body["data"]["result"]


def wait_for(what, fn, timeout=60, interval=0.5):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # not up yet
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last})")


def main():
    build = sys.argv[sys.argv.index("--build") + 1] if "--build" in sys.argv else os.path.join(ROOT, "build")
    for tool in ("prometheus", "promtool"):
        if not shutil.which(tool):
            print(f"SKIPPED: {tool} is not installed (scripts/install-deps.sh installs Debian's prometheus)")
            return 77
    polytune = os.path.join(build, "cli/polytune")
    tmp = tempfile.mkdtemp(prefix="polytune-mon-")
    procs = []
    failures = []

    def spawn(args, log):
        procs.append(subprocess.Popen(args, stdout=open(os.path.join(tmp, log), "w"), stderr=subprocess.STDOUT))

    try:
        grpc_port, cmetrics, w1, w2, prom_port = free_ports(5)
        target = f"127.0.0.1:{grpc_port}"
        spawn([os.path.join(build, "coordinator/polytune-coordinator"), "--listen", target, "--data-dir",
               os.path.join(tmp, "coord"), "--heartbeat-timeout", "5s", "--metrics-listen", f"127.0.0.1:{cmetrics}",
               "--job-metrics-grace", f"{GRACE_SECONDS}s"], "coordinator.log")
        rz = 21000 + (os.getpid() % 500) * 10
        for i, mport in ((1, w1), (2, w2)):
            spawn([os.path.join(build, "worker/daemon/polytune-worker"), "--coordinator", target, "--work-dir",
                   os.path.join(tmp, f"w{i}"), "--devices", "cpu:1", "--name", f"w{i}", "--polytune-bin", polytune,
                   "--rendezvous-ports", f"{rz + 5 * (i - 1)}-{rz + 5 * i - 1}", "--metrics-listen",
                   f"127.0.0.1:{mport}"], f"w{i}.log")
        shutil.copy(os.path.join(ROOT, "deploy/prometheus/alerts.yml"), os.path.join(tmp, "alerts.yml"))
        with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
            f.write(f"""global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [alerts.yml]
scrape_configs:
  - job_name: polytune-coordinator
    static_configs: [{{targets: ["127.0.0.1:{cmetrics}"]}}]
  - job_name: polytune-worker
    static_configs: [{{targets: ["127.0.0.1:{w1}", "127.0.0.1:{w2}"]}}]
""")
        prom = f"127.0.0.1:{prom_port}"
        spawn(["prometheus", f"--config.file={tmp}/prometheus.yml", f"--storage.tsdb.path={tmp}/tsdb",
               f"--web.listen-address={prom}"], "prometheus.log")

        for port in (cmetrics, w1, w2):
            text = wait_for(f"/metrics on {port}", lambda: get(f"http://127.0.0.1:{port}/metrics"))
            check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
            if check.returncode != 0 or check.stdout.strip() or check.stderr.strip():
                failures.append(f"promtool check metrics on :{port}: {check.stdout}{check.stderr}")

        model = os.path.join(tmp, "model")
        subprocess.run([polytune, "model", "init", "--out", model, "--hidden-size", "64", "--layers", "2", "--heads",
                        "4", "--kv-heads", "2", "--intermediate-size", "128", "--vocab-size", "320", "--seed", "5"],
                       check=True, capture_output=True)
        spec = os.path.join(tmp, "job.yaml")
        with open(spec, "w") as f:
            f.write(f"""model: {{path: {model}}}
lora: {{r: 4, alpha: 8}}
data: {{train: {ROOT}/examples/data/instructions_train.jsonl, eval: {ROOT}/examples/data/instructions_eval.jsonl,
       max_seq_len: 128}}
training: {{lr: 0.002, max_steps: 12, micro_batch_size: 2, eval_every: 6, checkpoint_every: 6,
           eval_generate: {{every: 6, examples: 8, max_new_tokens: 8}}}}
resources: {{world_size: 2}}
""")
        cli = [polytune, "--coordinator", target]
        wait_for("two workers", lambda: len(json.loads(subprocess.run(cli + ["workers", "--json"], capture_output=True,
                                                                          text=True).stdout or "[]")) == 2)
        job = json.loads(subprocess.run(cli + ["submit", spec, "--json"], check=True, capture_output=True,
                                        text=True).stdout)["id"]
        watch = subprocess.run(cli + ["watch", job], capture_output=True, text=True, timeout=600)
        if watch.returncode != 0:
            raise AssertionError(f"job did not succeed:\n{watch.stdout}{watch.stderr}")
        ended = time.time()
        wait_for("the job's final step in Prometheus",
                 lambda: any(r["value"][1] == "12" for r in query(prom, f'polytune_train_step{{job_id="{job}"}}')))

        # Rates need two samples in their window: wait until every target has been scraped
        # successfully several times in the last 20 s.
        def scraped_enough():
            r = query(prom, 'count_over_time((up == 1)[20s:1s])')
            return len(r) == 3 and all(float(x["value"][1]) >= 5 for x in r)
        try:
            wait_for("steady scrapes of all three endpoints", scraped_enough, timeout=60)
        except AssertionError as e:
            targets = json.loads(get(f"http://{prom}/api/v1/targets"))["data"]["activeTargets"]
            failures.append(f"{e}; targets: " + "; ".join(
                f"{t['scrapeUrl']} {t['health']} {t.get('lastError', '')} ({t.get('lastScrapeDuration')} s)"
                for t in targets))
        dashboard = json.load(open(os.path.join(ROOT, "deploy/grafana/polytune.json")))
        names = {v["name"] for v in dashboard["templating"]["list"]}
        if "job" in names or "job_id" not in names or "datasource" not in names:
            failures.append(f"dashboard variables {names}: want datasource and job_id, never job")
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        empty_ok = []
        for expr in exprs:
            q = expr.replace("$job_id", job).replace("$__rate_interval", "1m")
            try:
                result = query(prom, q)
            except Exception as e:
                failures.append(f"dashboard expr does not evaluate: {expr}: {e}")
                continue
            if not result:
                why = next((w for k, w in EXPECTED_EMPTY.items() if k in expr), None)
                if why:
                    empty_ok.append(f"{expr} ({why})")
                else:
                    failures.append(f"dashboard expr returns no series: {expr}")
        langs = {r["metric"]["lang"] for r in query(prom, f'polytune_eval_loss{{job_id="{job}"}}')}
        if len(langs) < 2:
            failures.append(f"per-language eval loss has languages {langs}")

        def rules_evaluated():
            groups = json.loads(get(f"http://{prom}/api/v1/rules"))["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return rules if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules) else None
        rules = wait_for("alert rules to be evaluated", rules_evaluated, timeout=30)
        for r in rules:
            if r.get("health") != "ok" or r.get("lastError"):
                failures.append(f"alert {r['name']} does not evaluate: {r.get('lastError')}")
        alerts = {r["name"] for r in rules}
        for want in ("PolytuneWorkerLost", "PolytuneJobFailed", "PolytuneQueueWaitTooLong", "PolytuneTrainingStalled",
                     "PolytuneLossNotFinite"):
            if want not in alerts:
                failures.append(f"alert {want} missing")
        firing = [r["name"] for r in rules if r.get("state") == "firing"]
        if firing:
            failures.append(f"alerts firing on a healthy run: {firing}")

        # After the grace period the coordinator drops the job's series; Prometheus marks them
        # stale at the next scrape.
        time.sleep(max(0.0, ended + GRACE_SECONDS + 4 - time.time()))
        for family in ("polytune_job_info", "polytune_train_step", "polytune_train_loss", "polytune_eval_loss"):
            left = query(prom, f'{family}{{job_id="{job}"}}')
            if left:
                failures.append(f"{family} of {job} still present after the grace period: {left}")
        if not query(prom, "polytune_jobs_finished_total"):
            failures.append("cluster families vanished with the job")
        if failures:
            targets = json.loads(get(f"http://{prom}/api/v1/targets"))["data"]["activeTargets"]
            print("targets: " + "; ".join(f"{t['scrapeUrl']} {t['health']} {t.get('lastError', '')} "
                                          f"({t.get('lastScrapeDuration')} s)" for t in targets))

        print(f"{len(exprs)} dashboard expressions, {len(rules)} alert rules checked")
        for e in empty_ok:
            print(f"expected empty: {e}")
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        if failures:
            for name in os.listdir(tmp):
                if name.endswith(".log"):
                    print(f"--- {name}\n" + open(os.path.join(tmp, name)).read()[-3000:])
        shutil.rmtree(tmp, ignore_errors=True)
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
