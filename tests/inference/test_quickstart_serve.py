"""The quickstart's serving stage on a small arm-push checkpoint: a real server on loopback."""

from __future__ import annotations

import json


def test_serve_stage_reports_latency_through_the_client(push_teacher, tmp_path):
    from apps.quickstart.serve import serve_stage

    checkpoint = push_teacher("flow")
    result = {"bc_policy": "flow", "policies": {"flow": {"checkpoint": str(checkpoint)}}}
    figures = serve_stage(tmp_path, result, requests=20, threads=1)
    assert figures["requests"] == 20 and figures["policy"] == "flow"
    assert (figures["sampler"], figures["steps"]) == ("euler", 10)
    assert figures["backend"] in ("torch", "onnx")
    assert 0 < figures["server_inference_p50_ms"] <= figures["p50_ms"] <= figures["p99_ms"]
    assert json.loads((tmp_path / "serving.json").read_text()) == figures
