"""With --dp 2 the engine-state metrics come once per replica, labelled
engine="0" and engine="1", and the per-replica samples add up to what the
replicas did: every request ran on exactly one of them."""
import requests

from conftest import STORIES_ARGS, start_server

ENGINE_METRICS = ["tidal:num_requests_running", "tidal:num_requests_waiting", "tidal:kv_cache_usage_perc",
                  "tidal:kv_cache_used_blocks", "tidal:kv_cache_total_blocks", "tidal:prefix_cache_queries_total",
                  "tidal:prefix_cache_hits_total", "tidal:num_preemptions_total"]


def per_engine(samples, name):
    return {key.split('engine="')[1].split('"')[0]: value
            for key, value in samples.items() if key.startswith(name + "{") and 'engine="' in key}


def test_metrics_are_labelled_per_replica():
    server = start_server(STORIES_ARGS, "--dp", "2")
    try:
        # Distinct prompts, sent together so least-outstanding-work spreads them.
        import concurrent.futures
        prompts = [f"Once upon a time there was a {w}" for w in ("cat", "dog", "bird", "fish", "frog", "bear")]
        with concurrent.futures.ThreadPoolExecutor(len(prompts)) as pool:
            replies = list(pool.map(lambda p: requests.post(server.url + "/v1/completions", timeout=60, json={
                "model": "stories", "prompt": p, "max_tokens": 8, "temperature": 0}), prompts))
        assert all(r.status_code == 200 for r in replies)
        samples = server.metrics()
        for name in ENGINE_METRICS:
            assert set(per_engine(samples, name)) == {"0", "1"}, name
        # Each replica owns half the pool, and both took prompts.
        blocks = per_engine(samples, "tidal:kv_cache_total_blocks")
        assert blocks["0"] == blocks["1"] > 0
        queries = per_engine(samples, "tidal:prefix_cache_queries_total")
        assert queries["0"] > 0 and queries["1"] > 0
        assert sum(per_engine(samples, "tidal:num_requests_running").values()) == 0
        assert sum(per_engine(samples, "tidal:kv_cache_used_blocks").values()) == 0
    finally:
        assert server.stop() == 0
