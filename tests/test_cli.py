"""One vocabulary of options across the commands: the Transformers spellings, the earlier ones as aliases
that still work, and the earlier module commands saying where the command went."""

import importlib
import os
import runpy
import sys

import pytest
from transformers import HfArgumentParser, TrainingArguments

import evaluate_hf
import explain as explain_cli
import train_hf
from pneumolens import cli, commands


def spelt(arguments: list[str], spelling: dict[str, str]) -> list[str]:
    return [spelling.get(argument, argument) for argument in arguments]


def train_hf_arguments(argv: list[str]):
    parser = HfArgumentParser((train_hf.ModelArguments, train_hf.DataArguments, train_hf.PneumoTrainingArguments,
                               train_hf.AfterTrainingArguments))
    return parser.parse_args_into_dataclasses(args=argv)


# Each command with every option of the vocabulary it takes, in the new spelling.
PARSERS = {
    "train_hf.py": (train_hf_arguments, ["--model_name_or_path", "m", "--model_revision", "r",
                                         "--dataset_name_or_dir", "d", "--output_dir", "o"]),
    "evaluate_hf.py": (lambda argv: HfArgumentParser(evaluate_hf.EvaluationArguments).parse_args_into_dataclasses(argv),
                       ["--model_name_or_path", "m", "--model_revision", "r", "--dataset_name_or_dir", "d"]),
    **{f"explain.py {name}": (explain_cli.build_parser().parse_args,
                              [name, "x.png", "--model_name_or_path", "m", "--model_revision", "r"])
       for name in ("maps", "report", "sanity")},
    "explain.py maps --explained_index": (explain_cli.build_parser().parse_args, ["maps", "x.png", "--explained_index", "1"]),
    **{f"explain.py {name}": (explain_cli.build_parser().parse_args,
                              [name, "--dataset_name_or_dir", "d", "--model_name_or_path", "m", "--model_revision", "r"])
       for name in ("select", "faithfulness", "artifacts", "markings")},
    **{f"python -m pneumolens {name}": (commands.build_parser().parse_args,
                                        [name, "--model_name_or_path", "m", "--dataset_name_or_dir", "d"])
       for name in ("calibrate", "fit-ood")},
}


@pytest.mark.parametrize("command", PARSERS)
def test_every_earlier_spelling_parses_as_the_new_one(command):
    parse, arguments = PARSERS[command]
    old = spelt(arguments, cli.ALIASES)
    assert old != arguments, "the case names no option with an earlier spelling"
    assert parse(old) == parse(arguments)


def test_every_alias_runs_a_command_as_its_new_spelling_does(tiny_trained_dirs, real_imagefolder, tmp_path):
    from tests.conftest import run_main

    model = str(tiny_trained_dirs["vit"])
    outputs = {}
    for name, spelling in (("new", {}), ("old", cli.ALIASES)):
        argv = spelt(["--model_name_or_path", model, "--model_revision", "main", "--dataset_name_or_dir",
                      str(real_imagefolder), "--split", "validation", "--bootstrap_samples", "0",
                      "--output_dir", str(tmp_path / name)], spelling)
        result = run_main(evaluate_hf.main, "evaluate_hf.py", *argv)
        assert result.returncode == 0, result.stderr[-2000:]
        outputs[name] = (tmp_path / name / "predictions.csv").read_text()
    assert outputs["old"] == outputs["new"] and outputs["new"].count("\n") > 4


@pytest.mark.parametrize("module, command", [("pneumolens.calibration", "calibrate"), ("pneumolens.ood", "fit-ood"),
                                             ("pneumolens.hub", "push")])
@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")  # runpy: it is imported already
def test_an_earlier_module_command_says_where_the_command_went(module, command, monkeypatch):
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    with pytest.raises(SystemExit) as exit:  # as `python -m MODULE --help` runs it, in this process
        runpy.run_module(module, run_name="__main__", alter_sys=False)
    assert f"`python -m pneumolens {command}` now" in str(exit.value.code)


def test_the_shared_defaults_are_train_hfs():
    assert TrainingArguments.__dataclass_fields__["seed"].default == cli.SEED
    assert train_hf.DataArguments.__dataclass_fields__["validation_fraction"].default == cli.VALIDATION_FRACTION
    parsed = commands.build_parser().parse_args(["calibrate", "--model_name_or_path", "m", "--dataset_name_or_dir", "d"])
    assert (parsed.validation_fraction, parsed.seed) == (cli.VALIDATION_FRACTION, cli.SEED)


@pytest.mark.parametrize("command", commands.COMMANDS, ids=lambda c: f"{c.program} {c.name}")
def test_every_registered_command_has_its_functions_and_its_front_door_parses_it(command):
    assert callable(command.function(command.arguments)) and callable(command.function(command.run))
    parser = commands.build_parser(command.program, only=command.name)
    assert command.name in parser._subparsers._group_actions[0].choices
    help_text = " ".join(parser._subparsers._group_actions[0].choices[command.name].format_help().split())
    described = command.description or importlib.import_module(command.function(command.run).__module__).__doc__
    assert " ".join(described.split()[:8]) in help_text


def test_both_front_doors_read_the_one_registry():
    assert explain_cli.SUBCOMMANDS == tuple(commands.commands_of(commands.EXPLAIN))
    assert {c.program for c in commands.COMMANDS} == {commands.EXPLAIN, commands.PNEUMOLENS}
    names = [(c.program, c.name) for c in commands.COMMANDS]
    assert len(names) == len(set(names))


def test_a_programs_own_help_lists_its_commands_without_importing_them():
    import subprocess
    import sys

    code = ("import sys\nfrom pneumolens import commands\ntry:\n    commands.main(['--help'])\nexcept SystemExit:\n"
            "    pass\nprint(sorted(m for m in sys.modules if m.startswith('pneumolens.commands.')))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "HF_HUB_OFFLINE": "1"}).stdout
    assert "index-films" in shown and "Upload a saved model folder" in shown  # every command by its summary
    assert shown.strip().endswith("[]")  # and none of their modules imported
