// Renders every Kustomize overlay with `kubectl kustomize` and checks every object:
//   1. against its schema (Kubernetes OpenAPI, Prometheus Operator and cert-manager CRDs,
//      through the pinned kubernetes-models packages), unknown fields included;
//   2. against our own conventions (probes, resources, non-root, the worker's shm and GPU
//      limits, the coordinator's PVC, named ports, the dashboard JSON carried unchanged, the
//      PrometheusRule equal to deploy/prometheus/alerts.yml).
// A deliberately broken copy of an object must fail both checks, so neither can pass vacuously.
//   node tests/deploy/manifests_test.js      exit 0 ok, 1 failures, 77 skipped (says why)
"use strict";
const {execFileSync} = require("child_process");
const fs = require("fs");
const path = require("path");

const ROOT = path.resolve(__dirname, "../..");
const KUBE = path.join(ROOT, "deploy/kubernetes");
const skip = (why) => {
  console.log("SKIPPED: " + why);
  process.exit(77);
};
try {
  execFileSync("kubectl", ["version", "--client"], {stdio: "ignore"});
} catch (e) {
  skip("kubectl is not installed (it renders the Kustomize overlays; CI has it)");
}
if (!fs.existsSync(path.join(__dirname, "node_modules/kubernetes-models")))
  skip("the schema packages are not installed: run `npm ci --prefix tests/deploy` (scripts/install-deps.sh does)");
const YAML = require("yaml");
const {unknownFields} = require("./schema_keys");

const failures = [];
const fail = (where, what) => failures.push(`${where}: ${what}`);

// The model module of an apiVersion/kind in the pinned packages.
function modelPath(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const pkg = group === "monitoring.coreos.com" ? "@kubernetes-models/prometheus-operator"
            : group === "cert-manager.io"       ? "@kubernetes-models/cert-manager"
                                                : "kubernetes-models";
  return path.join(__dirname, "node_modules", pkg, group, version, kind);
}

function schemaErrors(obj) {
  const where = `${obj.kind}/${obj.metadata && obj.metadata.name}`;
  const module = modelPath(obj.apiVersion, obj.kind);
  if (!fs.existsSync(module + ".js")) return [`${where}: no schema for ${obj.apiVersion} ${obj.kind}`];
  const Model = require(module)[obj.kind];
  const errors = [];
  try {
    new Model(obj).validate();
  } catch (e) {
    errors.push(`${where}: ${e.message}`);
  }
  return errors.concat(unknownFields(obj, module + ".d.ts", "I" + obj.kind));
}

function render(dir) {
  const text = execFileSync("kubectl", ["kustomize", dir], {encoding: "utf8"});
  return YAML.parseAllDocuments(text).map((d) => d.toJSON()).filter(Boolean);
}

// JSON with object keys sorted (kustomize reorders keys).
const canonical = (v) => JSON.stringify(v, (k, x) =>
    x && typeof x === "object" && !Array.isArray(x) ? Object.fromEntries(Object.keys(x).sort().map((key) => [key, x[key]])) : x);
const podSpecOf = (o) => (o.spec && o.spec.template && o.spec.template.spec) || null;

function conventions(name, objects) {
  const byKind = (k) => objects.filter((o) => o.kind === k);
  for (const o of objects) {
    const where = `${name}: ${o.kind}/${o.metadata.name}`;
    if (o.metadata.namespace) fail(where, "sets a namespace (the base must stay namespace-agnostic)");
    const pod = podSpecOf(o);
    if (!pod) continue;
    const sc = pod.securityContext || {};
    if (sc.runAsNonRoot !== true || !(sc.runAsUser > 0)) fail(where, "pod must run as a non-root user");
    if (pod.automountServiceAccountToken !== false) fail(where, "pods need no API token: automountServiceAccountToken: false");
    for (const c of pod.containers) {
      const cw = `${where} container ${c.name}`;
      for (const p of ["startupProbe", "readinessProbe", "livenessProbe"]) if (!c[p]) fail(cw, `no ${p}`);
      const r = c.resources || {};
      if (!r.requests || !r.requests.cpu || !r.requests.memory) fail(cw, "resource requests (cpu, memory) missing");
      if (!r.limits || !r.limits.memory) fail(cw, "memory limit missing");
      const csc = c.securityContext || {};
      if (csc.allowPrivilegeEscalation !== false) fail(cw, "allowPrivilegeEscalation must be false");
      if (csc.readOnlyRootFilesystem !== true) fail(cw, "root filesystem must be read-only");
      for (const port of c.ports || []) if (!port.name) fail(cw, `port ${port.containerPort} has no name`);
      const args = (c.args || []).join(" ");
      if (args.startsWith("polytune-worker")) {
        const shm = (pod.volumes || []).find((v) => v.name === "dshm");
        if (!shm || !shm.emptyDir || shm.emptyDir.medium !== "Memory" || !shm.emptyDir.sizeLimit)
          fail(cw, "/dev/shm must be an in-memory emptyDir with a sizeLimit");
        if (!(c.volumeMounts || []).some((m) => m.name === "dshm" && m.mountPath === "/dev/shm"))
          fail(cw, "dshm not mounted at /dev/shm");
        const models = (c.volumeMounts || []).find((m) => m.mountPath === "/models");
        if (!models || models.readOnly !== true || !args.includes("--model-root=/models"))
          fail(cw, "models must be a read-only mount under --model-root");
        if (!args.includes("--address=$(POD_IP)")) fail(cw, "the pod IP must be passed as --address");
        if (!c.lifecycle || !c.lifecycle.preStop) fail(cw, "a preStop hook must drain the worker");
        const grace = pod.terminationGracePeriodSeconds || 30;
        const preempt = Number((/--preempt-grace=(\d+)/.exec(args) || [0, 120])[1]);
        if (grace < preempt + 30) fail(cw, `terminationGracePeriodSeconds ${grace} < --preempt-grace ${preempt} + 30`);
        if (o.kind === "DaemonSet") {
          const gpus = (r.limits || {})["nvidia.com/gpu"];
          if (!gpus) fail(cw, "GPU workers need an nvidia.com/gpu limit");
          if (!(pod.tolerations || []).some((t) => t.key === "nvidia.com/gpu")) fail(cw, "no nvidia.com/gpu toleration");
          if (!pod.nodeSelector) fail(cw, "GPU workers need a nodeSelector");
        }
      }
      if (args.startsWith("polytune-coordinator")) {
        if (!(o.spec.volumeClaimTemplates || []).some((t) => (c.volumeMounts || []).some((m) => m.name === t.metadata.name && m.mountPath === "/data")))
          fail(cw, "--data-dir /data must be on a PersistentVolumeClaim");
        for (const flag of ["--auth-file=", "--tls-cert=", "--health-listen="])
          if (!args.includes(flag)) fail(cw, `coordinator without ${flag}`);
        if (args.includes("--insecure")) fail(cw, "coordinator runs --insecure");
      }
    }
  }
  if (!byKind("PodDisruptionBudget").some((p) => p.spec.selector.matchLabels["app.kubernetes.io/component"] === "coordinator"))
    fail(name, "no PodDisruptionBudget for the coordinator");
  if (byKind("NetworkPolicy").length < 2) fail(name, "NetworkPolicies for the coordinator and the workers missing");
  for (const cm of byKind("ConfigMap").filter((c) => c.metadata.name === "polytune-dashboard")) {
    const want = fs.readFileSync(path.join(ROOT, "deploy/grafana/polytune.json"), "utf8");
    if (cm.data["polytune.json"] !== want) fail(name, "dashboard ConfigMap differs from deploy/grafana/polytune.json");
    if ((cm.metadata.labels || {}).grafana_dashboard !== "1") fail(name, "dashboard ConfigMap lacks grafana_dashboard: \"1\"");
  }
  for (const rule of byKind("PrometheusRule")) {
    const want = YAML.parse(fs.readFileSync(path.join(ROOT, "deploy/prometheus/alerts.yml"), "utf8")).groups;
    if (canonical(rule.spec.groups) !== canonical(want))
      fail(name, "PrometheusRule differs from deploy/prometheus/alerts.yml: run scripts/gen-prometheus-rule.py");
  }
}

const dirs = [["base", path.join(KUBE, "base")]].concat(
    fs.readdirSync(path.join(KUBE, "overlays")).sort().map((d) => [d, path.join(KUBE, "overlays", d)]));
const expectKinds = {monitoring: ["ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"],
                     tls: ["Issuer", "Certificate"], cpu: ["StatefulSet"], gpu: ["DaemonSet"]};
let checked = 0;
for (const [name, dir] of dirs) {
  let objects;
  try {
    objects = render(dir);
  } catch (e) {
    fail(name, "kubectl kustomize failed: " + e.message);
    continue;
  }
  for (const o of objects) for (const e of schemaErrors(o)) fail(name, e);
  conventions(name, objects);
  for (const k of expectKinds[name] || []) if (!objects.some((o) => o.kind === k)) fail(name, `renders no ${k}`);
  if (name === "cpu" && objects.some((o) => o.kind === "DaemonSet")) fail(name, "still renders the GPU DaemonSet");
  checked += objects.length;
  console.log(`${name}: ${objects.length} objects rendered and checked`);
}

// Negative controls: a misspelled field, a wrong type, a missing probe must each be caught.
const sample = render(path.join(KUBE, "overlays/cpu")).find((o) => o.kind === "StatefulSet" && o.metadata.name === "polytune-worker-cpu");
const misspelled = JSON.parse(JSON.stringify(sample));
misspelled.spec.template.spec.containers[0].imagePullPolicyy = "Always";
if (!schemaErrors(misspelled).some((e) => e.includes("unknown field 'imagePullPolicyy'"))) fail("control", "a misspelled field passed");
const wrongType = JSON.parse(JSON.stringify(sample));
wrongType.spec.template.spec.containers[0].ports[0].containerPort = "seven";
if (schemaErrors(wrongType).length === 0) fail("control", "a string port passed the schema");
const crd = render(path.join(KUBE, "overlays/monitoring")).find((o) => o.kind === "PodMonitor");
crd.spec.podMetricsEndpoints[0].intervall = "15s";
if (!schemaErrors(crd).some((e) => e.includes("unknown field 'intervall'"))) fail("control", "a misspelled CRD field passed");
const noProbe = JSON.parse(JSON.stringify(sample));
delete noProbe.spec.template.spec.containers[0].livenessProbe;
const before = failures.length;
conventions("control", [noProbe]);
const probeCaught = failures.splice(before).some((f) => f.includes("no livenessProbe"));
if (!probeCaught) fail("control", "a missing probe passed");

if (failures.length) {
  console.log(failures.join("\n"));
  console.log(`${failures.length} problem(s) in ${checked} rendered objects`);
  process.exit(1);
}
console.log(`all ${checked} rendered objects valid, no unknown fields, conventions hold`);
