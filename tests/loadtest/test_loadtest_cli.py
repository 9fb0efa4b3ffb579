"""The `loadtest` CLI: bad input is one `error:` line on stderr with exit code 2, never a traceback."""

import socket
import subprocess
import sys

import pytest

from loadtest.report import write_reports


@pytest.fixture()
def loadtest_main(capsys, monkeypatch):
    """The same `main()` in this process (a subprocess per case costs ~1.5 s of imports)."""
    from loadtest.cli import main

    def call(*args):
        monkeypatch.setattr(sys, "argv", ["loadtest", *args])
        with pytest.raises(SystemExit) as exit_info:
            main()
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, exit_info.value.code, out, err)

    return call


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def unused_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--slo", "ttft=fast"], ["--slo", "ttft"]),
        (["--slo", "ttft=200"], ["needs a unit"]),
        (["--duration", "0"], ["--duration must be > 0"]),
        (["--duration", "soon"], ["--duration", "not a duration"]),
        (["--profile", "burst"], ["--profile", "concurrency, constant, poisson, sweep"]),
        (["--profile", "poisson"], ["needs --rate"]),
        (["--profile", "constant", "--rate", "-1"], ["--rate"]),
        (["--concurrency", "0"], ["--concurrency"]),
        (["--rates", "1,x", "--profile", "sweep"], ["--rates"]),
        (["--mode", "parallel"], ["--mode"]),
        (["--baseline", "nope"], ["baseline 'nope' is not one of the variants"]),
        (["--prompts", "/nonexistent/prompts.txt"], ["--prompts", "does not exist"]),
        (["--requests-per-day", "10", "--requests-per-second", "1"], ["not both"]),
        (["--bogus-flag"], ["No such option"]),
    ],
)
def test_bad_run_options(loadtest_main, args, fragments):
    proc = loadtest_main("run", "--url", "http://127.0.0.1:9", "--variants", "a,b", *args)
    assert_one_line_error(proc, *fragments)


def test_unreachable_gateway(loadtest_cli):
    url = f"http://127.0.0.1:{unused_port()}"
    proc = loadtest_cli("run", "--url", url, "--variants", "dense", "--duration", "1s", "--quiet")
    assert_one_line_error(proc, "cannot reach", url)


def test_fleet_from_capacities_prints_the_table(loadtest_cli, tmp_path):
    args = (
        "--capacity dense=4,sparse-2:4=5 --perplexity dense=24.46,sparse-2:4=159.6 --requests-per-day 1000000"
    )
    more = "--peak-to-mean 3 --tokens-per-request 200 --gpu-price 2.5"
    proc = loadtest_cli("fleet", *args.split(), *more.split(), "--output", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "$16,425" in proc.stdout and "$12,775" in proc.stdout and "+22%" in proc.stdout
    assert (tmp_path / "gpus_vs_traffic.png").stat().st_size > 10_000
    assert '"replicas": 7' in (tmp_path / "fleet.json").read_text()


def test_fleet_from_a_result_file(loadtest_main, tmp_path, sample_result):
    write_reports(sample_result, tmp_path)
    proc = loadtest_main("fleet", "--result", str(tmp_path / "result.json"), "--requests-per-second", "50")
    assert proc.returncode == 0, proc.stderr
    assert "dense" in proc.stdout and "sparse-2:4" in proc.stdout and "baseline" in proc.stdout


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        ([], ["either --result FILE or --capacity"]),
        (["--capacity", "dense"], ["--capacity", "NAME=NUMBER"]),
        (["--capacity", "dense=4", "--perplexity", "sparse=3"], ["--perplexity names sparse"]),
        (["--capacity", "dense=4", "--gpu-price", "-1"], ["--gpu-price"]),
        (["--capacity", "dense=4", "--baseline", "x"], ["baseline 'x'"]),
        (["--result", "/nonexistent/result.json"], ["does not exist"]),
    ],
)
def test_bad_fleet_options(loadtest_main, args, fragments):
    assert_one_line_error(loadtest_main("fleet", *args), *fragments)


def test_demo_reports_a_gateway_that_dies_before_it_is_ready(loadtest_main, tmp_path):
    """The demo's orchestration with a stand-in gateway command that fails at once: a one-line error that
    quotes the gateway's last log line, and no process left behind."""
    script = "print('pruning failed: no space left'); raise SystemExit(3)"
    proc = loadtest_main(
        "demo", "--gateway-cmd", f'{sys.executable} -c "{script}"', "--output", str(tmp_path)
    )
    assert_one_line_error(proc, "the gateway exited with code 3", "pruning failed: no space left")
    assert "pruning failed" in (tmp_path / "gateway.log").read_text()


def test_demo_without_a_gateway_command(loadtest_main, tmp_path):
    proc = loadtest_main("demo", "--gateway-cmd", "/nonexistent/gateway", "--output", str(tmp_path))
    assert_one_line_error(proc, "cannot start the gateway")
    assert_one_line_error(loadtest_main("demo", "--duration", "0"), "--duration must be > 0")


def test_chat_prompts_need_the_chat_endpoint(loadtest_main, tmp_path):
    prompts = tmp_path / "chat.jsonl"
    prompts.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    proc = loadtest_main("run", "--url", "http://127.0.0.1:9", "--variants", "a", "--prompts", str(prompts))
    assert_one_line_error(proc, "use --endpoint chat")
