"""Reading Flower's output: the lines ``flwr run --stream`` prints, colour codes and all."""

from __future__ import annotations

from pathlib import Path

from flower_dl.launch import flwr_output

GREEN, RESET = "\x1b[92m", "\x1b[0m"


def info(message: str) -> str:
    """A ServerApp log line as Flower's console handler formats it (coloured level name)."""
    return f"{GREEN}INFO {RESET}:      {message}\n"


def test_run_id_from_flwr_runs_message_plain_and_coloured() -> None:
    assert flwr_output.run_id("Successfully started run 4893201654331\n") == "4893201654331"
    assert flwr_output.run_id("\x1b[32mSuccessfully started run 17\x1b[0m\n") == "17"
    assert flwr_output.run_id("Successfully started run 17 in federation default\n") == "17"
    assert flwr_output.run_id(info("Starting FedAvg strategy:")) is None


def test_round_of_a_round_line() -> None:
    assert flwr_output.round_of(info("[ROUND 2/10]")) == (2, 10)
    assert flwr_output.round_of("[ROUND 1/1]") == (1, 1)
    assert flwr_output.round_of(info("round 3: consensus distance 0.0123")) is None
    assert flwr_output.round_of(info("[ROUND 2/")) is None


def test_strategy_seconds() -> None:
    assert flwr_output.strategy_seconds(info("Strategy execution finished in 12.34s")) == 12.34
    assert flwr_output.strategy_seconds(info("Strategy execution finished in 7 s")) == 7.0
    assert flwr_output.strategy_seconds(info("[ROUND 2/10]")) is None


def test_results_folder_keeps_spaces_and_drops_colour_and_newline() -> None:
    assert flwr_output.results_folder(info("results written to /tmp/out/e2e")) == Path("/tmp/out/e2e")
    line = f"{GREEN}INFO {RESET}:      results written to /home/me/my results/run{RESET}\r\n"
    assert flwr_output.results_folder(line) == Path("/home/me/my results/run")
    assert flwr_output.results_folder(info("flower-dl summary (decentralized, mlp, 2 rounds):")) is None


def test_plain_removes_every_escape_and_nothing_else() -> None:
    assert flwr_output.plain(info("[ROUND 2/10]")) == "INFO :      [ROUND 2/10]\n"
    assert flwr_output.plain("\x1b[1;31mERROR\x1b[0m: [x]") == "ERROR: [x]"
