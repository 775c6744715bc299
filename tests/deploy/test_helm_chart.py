"""deploy/helm/ember: helm lint --strict; helm template over a matrix of values, every manifest
validated strictly (unknown fields refused) against Kubernetes' own JSON schemas and the CRDs
of the Gateway API Inference Extension, KEDA and the Prometheus operator; what the rendered
pods do on start, probe and shutdown; and values.schema.json refusing bad values.

No API server is available offline: kubeconform with schemas scripts/deploy_tools.sh
generates into the cache outside the clone."""
import json
import os
import tempfile
import unittest

import yaml

from deploy.deploy_tools import DEPLOY, run, tool

CHART = os.path.join(DEPLOY, "helm", "ember")
KUBE_VERSION = "1.34.0"  # the Kubernetes release of the schemas (scripts/deploy_tools.sh)

FULL = {
    "resources": {"requests": {"cpu": "1500m", "memory": "1Gi"},
                  "limits": {"cpu": "1500m", "memory": "1Gi"}},
    "server": {"drainTimeoutSeconds": 120},
    "preStopSleepSeconds": 7,
    "secrets": {"adminKey": {"existingSecret": "ember-admin", "key": "admin-key"},
                "tenants": {"existingSecret": "ember-tenants", "key": "tenants.toml"}},
    "serviceMonitor": {"enabled": True},
    "spot": {"enabled": True, "required": True},
    "autoscaling": {"keda": {"enabled": True}},
    "gie": {"enabled": True, "endpointPicker": {"name": "ember-epp"},
            "objectives": [{"name": "interactive", "priority": 10},
                           {"name": "batch", "priority": 0}]},
}

# name → values; each must render and validate.
MATRIX = {
    "defaults": {},
    "full": FULL,
    "minimal": {"persistence": {"enabled": False}, "podDisruptionBudget": {"enabled": False},
                "topologySpread": {"enabled": False},
                "resources": {"limits": None, "requests": None}},
    "hpa": {"autoscaling": {"hpa": {"enabled": True, "maxReplicas": 8}}},
    "keda-scale-to-zero": {"autoscaling": {"keda": {
        "enabled": True, "minReplicas": 0,
        "wakeQuery": 'sum(rate(envoy_cluster_upstream_rq_total{envoy_cluster_name=~".*ember.*"}[1m]))'}}},
    "spot-preferred-hostpath-model": {
        "spot": {"enabled": True},
        "model": {"file": "llama/1b-q4_0.gguf", "id": "llama-1b",
                  # null drops the default volume source (helm merges maps)
                  "volume": {"persistentVolumeClaim": None,
                             "hostPath": {"path": "/srv/models", "type": "Directory"}}}},
}

# values → a piece of the error helm must print
BAD = [
    ({"server": {"drainTimeoutSeconds": 0}}, "drainTimeoutSeconds"),
    ({"secrets": {"adminKey": {"value": "hunter2"}}}, "additional properties 'value' not allowed"),
    ({"autoscaling": {"keda": {"enabled": True, "minReplicas": 0}}}, "wakeQuery"),
    ({"autoscaling": {"keda": {"enabled": True}, "hpa": {"enabled": True}}}, "'not' failed"),
    ({"autoscaling": {"hpa": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}},
     "minReplicas must not exceed maxReplicas"),
    ({"autoscaling": {"keda": {"enabled": True, "kvCacheUsage": 1.5}}}, "kvCacheUsage"),
    ({"model": {"file": "/etc/passwd"}}, "/model/file"),
    ({"resources": {"limits": {"cpu": "lots"}}}, "/resources/limits/cpu"),
    ({"server": {"port": 70000}}, "/server/port"),
    ({"gie": {"enabled": True}}, "gie.endpointPicker.name"),
    ({"gie": {"objectives": [{"name": "Not_A_Name", "priority": 1}]}}, "/gie/objectives/0/name"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    # two volume sources for the model: the default one was not dropped with null
    ({"model": {"volume": {"hostPath": {"path": "/srv"}}}}, "maxProperties"),
    ({"replicas": 3}, "additional properties 'replicas' not allowed"),
]


def helm_template(values, namespace="default", release="ember"):
    """Renders the chart: (exit status, output, [documents])."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        json.dump(values, f)
        f.flush()
        status, out = run(tool("helm"), "template", release, CHART, "--namespace", namespace,
                          "--kube-version", KUBE_VERSION, "--values", f.name)
    docs = [d for d in yaml.safe_load_all(out) if d] if status == 0 else []
    return status, out, docs


def kubeconform(manifests):
    """Validates YAML text strictly; returns (exit status, per-resource results)."""
    k8s, crds = tool("k8s-schemas"), tool("crd-schemas")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(manifests)
        f.flush()
        status, out = run(
            tool("kubeconform"), "-strict", "-output", "json", "-verbose",
            "-kubernetes-version", KUBE_VERSION,
            "-schema-location", k8s + "/{{ .ResourceKind }}{{ .KindSuffix }}.json",
            "-schema-location",
            crds + "/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json",
            f.name)
    return status, json.loads(out)["resources"]


def find(docs, kind):
    return [d for d in docs if d["kind"] == kind]


class HelmChartTest(unittest.TestCase):
    def test_lint_strict(self):
        status, out = run(tool("helm"), "lint", "--strict", CHART, "--kube-version",
                          KUBE_VERSION)
        self.assertEqual(status, 0, out)
        self.assertIn("0 chart(s) failed", out)

    def test_matrix_renders_valid_manifests(self):
        for name, values in MATRIX.items():
            with self.subTest(values=name):
                status, out, docs = helm_template(values)
                self.assertEqual(status, 0, out)
                status, results = kubeconform(out)
                bad = [r for r in results if r["status"] != "statusValid"]
                self.assertEqual(bad, [], f"{name}: {bad}")
                self.assertEqual(len(results), len(docs))

    def test_full_values_render_every_kind(self):
        _, _, docs = helm_template(FULL)
        kinds = sorted(d["kind"] for d in docs)
        self.assertEqual(kinds, ["InferenceObjective", "InferenceObjective", "InferencePool",
                                 "PodDisruptionBudget", "ScaledObject", "Service", "Service",
                                 "ServiceMonitor", "StatefulSet"])

    def test_validation_catches_unknown_fields(self):
        # The validator can fail: a misspelt field in a core kind and in each CRD.
        _, out, docs = helm_template(FULL)
        for kind, path, field in [("StatefulSet", ("spec", "template", "spec"), "terminationGrace"),
                                  ("ScaledObject", ("spec",), "minReplicas"),
                                  ("InferencePool", ("spec",), "targetPort"),
                                  ("ServiceMonitor", ("spec",), "endpoint")]:
            with self.subTest(kind=kind):
                doc = json.loads(json.dumps(find(docs, kind)[0]))
                node = doc
                for key in path:
                    node = node[key]
                node[field] = 1
                status, results = kubeconform(yaml.safe_dump(doc))
                self.assertNotEqual(status, 0)
                self.assertEqual(results[0]["status"], "statusInvalid")
                self.assertIn(f"'{field}' not allowed", results[0]["msg"])

    def test_pod_start_probes_and_shutdown(self):
        _, _, docs = helm_template(FULL)
        sts = find(docs, "StatefulSet")[0]
        pod = sts["spec"]["template"]["spec"]
        ember = pod["containers"][0]
        args = ember["args"]
        flag = lambda name: args[args.index(name) + 1]
        # --threads from the CPU limit 1500m; drain from values; data on the pod's volume.
        self.assertEqual(flag("--threads"), "1")
        self.assertEqual(flag("--drain-timeout"), "120s")
        self.assertEqual(flag("--data-dir"), "/data")
        self.assertEqual(flag("--host"), "0.0.0.0")
        # Shutdown: preStop sleep, then SIGTERM drains; the grace period covers both.
        self.assertEqual(ember["lifecycle"]["preStop"], {"sleep": {"seconds": 7}})
        self.assertEqual(pod["terminationGracePeriodSeconds"], 7 + 120 + 10)
        self.assertGreater(pod["terminationGracePeriodSeconds"], 120)
        # Probes: liveness /health, readiness and startup /ready.
        self.assertEqual(ember["livenessProbe"]["httpGet"]["path"], "/health")
        self.assertEqual(ember["readinessProbe"]["httpGet"]["path"], "/ready")
        self.assertEqual(ember["startupProbe"]["httpGet"]["path"], "/ready")
        # Non-root, read-only root filesystem; the data volume per pod.
        self.assertTrue(pod["securityContext"]["runAsNonRoot"])
        self.assertTrue(ember["securityContext"]["readOnlyRootFilesystem"])
        self.assertEqual(sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"], "data")
        self.assertEqual(sts["spec"]["podManagementPolicy"], "Parallel")
        # Secrets by reference only.
        self.assertEqual(ember["env"][0]["valueFrom"]["secretKeyRef"],
                         {"name": "ember-admin", "key": "admin-key"})
        tenants = [v for v in pod["volumes"] if v["name"] == "tenants"][0]
        self.assertEqual(tenants["secret"]["secretName"], "ember-tenants")
        self.assertEqual(pod["initContainers"][0]["command"][-2:],
                         ["/etc/ember/tenants/tenants.toml", "/data/tenants.toml"])
        # An autoscaler owns the replica count; spot is required and tolerated.
        self.assertNotIn("replicas", sts["spec"])
        self.assertIn("requiredDuringSchedulingIgnoredDuringExecution",
                      pod["affinity"]["nodeAffinity"])
        self.assertIn("cloud.google.com/gke-spot", [t["key"] for t in pod["tolerations"]])

    def test_threads_follow_the_cpu_limit(self):
        for cpu, threads in [("4", "4"), ("2500m", "2"), ("500m", "1"), (3, "3")]:
            with self.subTest(cpu=cpu):
                _, out, docs = helm_template({"resources": {"limits": {"cpu": cpu}}})
                args = find(docs, "StatefulSet")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
                self.assertEqual(args[args.index("--threads") + 1], threads, out)
        _, _, docs = helm_template({"resources": {"limits": None}})
        args = find(docs, "StatefulSet")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
        self.assertNotIn("--threads", args)  # ember reads its cgroup quota itself

    def test_autoscalers_read_the_backlog_not_cpu(self):
        _, _, docs = helm_template(FULL, namespace="ai", release="chat")
        so = find(docs, "ScaledObject")[0]
        self.assertEqual(so["spec"]["scaleTargetRef"]["kind"], "StatefulSet")
        queries = {t["name"]: t["metadata"]["query"] for t in so["spec"]["triggers"]}
        self.assertEqual(queries["requests-waiting"],
                         'sum(job_model_name:ember_num_requests_waiting:avg1m'
                         '{namespace="ai",job="chat-ember"})')
        self.assertEqual(queries["kv-cache-usage"],
                         'max(job_model_name:ember_kv_cache_usage_perc:max'
                         '{namespace="ai",job="chat-ember"})')
        _, _, docs = helm_template(MATRIX["hpa"])
        hpa = find(docs, "HorizontalPodAutoscaler")[0]
        self.assertEqual([m["external"]["metric"]["name"] for m in hpa["spec"]["metrics"]],
                         ["ember_requests_waiting", "ember_kv_cache_usage"])
        self.assertNotIn("cpu", json.dumps(hpa["spec"]["metrics"]))
        _, _, docs = helm_template(MATRIX["keda-scale-to-zero"])
        so = find(docs, "ScaledObject")[0]
        self.assertEqual(so["spec"]["minReplicaCount"], 0)
        self.assertIn("wake", [t["name"] for t in so["spec"]["triggers"]])

    def test_bad_values_are_refused(self):
        for values, needle in BAD:
            with self.subTest(values=values):
                status, out, _ = helm_template(values)
                self.assertNotEqual(status, 0, out)
                self.assertIn(needle, out)


if __name__ == "__main__":
    unittest.main()
