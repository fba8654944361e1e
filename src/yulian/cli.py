"""The `yulian` command. Each subcommand is a plain function: its signature is the CLI, its docstring the help.

Parameters without a default are positional arguments; the others are `--options` (underscores become dashes,
`bool` options are `--flag/--no-flag`). The `Args:` section of the docstring gives each option's help line.
Heavy imports happen inside the functions, so `yulian --help` stays instant.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["all_commands", "build_parser", "main"]


# ============================================================================================ commands
def version() -> None:
    """Print the installed yulian version."""
    import yulian

    print(yulian.__version__)


def demo(
    question: str = "What is a language chain?",
    stream: bool = True,
    real: bool = True,
    out: str = "runs/demo",
    steps: str = "all",
    fresh: bool = False,
) -> None:
    """Run the end-to-end demo on the embedded defaults (offline): a chain, a LoRA fine-tune, int8 behind the
    fidelity gate, a served model called with the openai client, and RAG on the packaged models.

    Args:
        question: the question the demo chain answers.
        stream: also show the answer streamed token by token.
        real: run the real steps (fine-tune, compress, serve, RAG); --no-real runs only the chain (instant).
        out: the folder every artefact goes to; finished steps whose inputs did not change are reused.
        steps: comma-separated steps: chain,train,compress,serve,rag (or all); the steps a chosen one needs run too.
        fresh: delete --out first (no reuse).
    """
    from yulian.demo import run

    run(question=question, stream=stream, real=real, out=out, steps=steps, fresh=fresh)


def all_commands() -> dict[str, Any]:
    """Every `yulian` subcommand by name (a dict value is a group of subcommands). Command modules import only
    light modules at top level."""
    from yulian.apps.monitor.commands import MONITOR_COMMANDS
    from yulian.apps.recommend.commands import recommend_command
    from yulian.apps.support.commands import support_command
    from yulian.compression.commands import compress_command
    from yulian.federated.commands import federate_command
    from yulian.guardrails import guard_command
    from yulian.models.chat_commands import chat, models
    from yulian.models.embed_commands import embed
    from yulian.privacy.commands import mask_command
    from yulian.retrieval.commands import index, search
    from yulian.retrieval.split_commands import split_command
    from yulian.serving.commands import serve
    from yulian.tuning.adapters import adapters_command
    from yulian.tuning.augment_commands import augment_command
    from yulian.tuning.commands import eval_command, predict_command, train_command
    from yulian.tuning.data_commands import data_command
    from yulian.tuning.explain import explain_command
    from yulian.tuning.fewshot import FEWSHOT_COMMANDS

    return {
        "adapters": adapters_command,
        "augment": augment_command,
        "app": {"monitor": MONITOR_COMMANDS, "recommend": recommend_command, "support": support_command},
        "chat": chat,
        "compress": compress_command,
        "data": data_command,
        "demo": demo,
        "embed": embed,
        "explain": explain_command,
        "federate": federate_command,
        "fewshot": FEWSHOT_COMMANDS,
        "guard": guard_command,
        "eval": eval_command,
        "index": index,
        "mask": mask_command,
        "models": models,
        "predict": predict_command,
        "search": search,
        "serve": serve,
        "split": split_command,
        "train": train_command,
        "version": version,
    }


# ============================================================================================ machinery
def _doc_parts(func: Callable[..., Any]) -> tuple[str, str, dict[str, str]]:
    doc = inspect.getdoc(func) or ""
    summary, _, rest = doc.partition("\n")
    args: dict[str, str] = {}
    body: list[str] = []
    in_args = False
    current = None
    for line in rest.splitlines():
        stripped = line.strip()
        if stripped in {"Args:", "Arguments:", "Parameters:"}:
            in_args = True
            continue
        if in_args and stripped and line.startswith("        ") and current:
            args[current] += " " + stripped
        elif in_args and ":" in stripped and line.startswith("    "):
            current, _, text = stripped.partition(":")
            current = current.split(" ")[0]
            args[current] = text.strip()
        elif in_args and not stripped:
            continue
        else:
            in_args = False
            body.append(line)
    return summary.strip(), "\n".join(body).strip(), args


def _arg_type(annotation: Any) -> tuple[Any, bool]:
    """The argparse `type` for an annotation, and whether it takes several values."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (list, tuple, Sequence) or (origin is not None and origin.__name__ in {"list", "tuple", "Sequence"}):
        return (args[0] if args and args[0] is not Ellipsis else str), True
    if args and origin is not None:  # Optional[X] / X | None
        return _arg_type(args[0])
    if annotation in (int, float, str, Path):
        return annotation, False
    return str, False


def _add_command(sub: Any, name: str, func: Callable[..., Any]) -> None:
    summary, body, arg_help = _doc_parts(func)
    parser = sub.add_parser(
        name,
        help=summary.replace("%", "%%"),
        description=f"{summary}\n\n{body}".strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    hints = typing.get_type_hints(func)
    for pname, param in inspect.signature(func).parameters.items():
        annotation = hints.get(pname, str)
        help_text = arg_help.get(pname, "").replace("%", "%%")  # argparse %-formats help strings
        flag = "--" + pname.replace("_", "-")
        if param.default is inspect.Parameter.empty:
            tp, many = _arg_type(annotation)
            parser.add_argument(pname, type=tp, nargs="+" if many else None, help=help_text)
        elif annotation is bool:
            parser.add_argument(
                flag, dest=pname, action=argparse.BooleanOptionalAction, default=param.default, help=help_text
            )
        else:
            tp, many = _arg_type(annotation)
            default = param.default
            shown = "" if default is None else f" (default: {default})"
            parser.add_argument(
                flag, dest=pname, type=tp, nargs="+" if many else None, default=default, help=help_text + shown
            )
    parser.set_defaults(_func=func)


def _add_group(sub: Any, name: str, group: Mapping[str, Any]) -> None:
    """A command with subcommands of its own (`yulian app monitor ...`): `group` maps their names to functions."""
    doc = inspect.getdoc(group) if not isinstance(group, dict) else None
    summary = (doc or f"{name} commands").partition("\n")[0]
    parser = sub.add_parser(name, help=summary, description=doc or summary)
    nested = parser.add_subparsers(title=f"{name} commands", metavar="COMMAND")
    for child, func in group.items():
        if isinstance(func, Mapping):
            _add_group(nested, child, func)
        else:
            _add_command(nested, child, func)
    parser.set_defaults(_func=None, _parser=parser)


def build_parser(commands: Mapping[str, Any] | None = None) -> argparse.ArgumentParser:
    """The argparse parser for `commands` (default: all of yulian's); a mapping as a value is a command group."""
    parser = argparse.ArgumentParser(
        prog="yulian",
        description="语链 yulian: chain, fine-tune, protect, compress and serve language models.",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name, func in (commands or all_commands()).items():
        if isinstance(func, Mapping):
            _add_group(sub, name, func)
        else:
            _add_command(sub, name, func)
    return parser


def main(argv: Sequence[str] | None = None, commands: Mapping[str, Any] | None = None) -> int:
    """Entry point of the `yulian` command; returns the exit status."""
    parser = build_parser(commands)
    ns = vars(parser.parse_args(argv))
    func = ns.pop("_func", None)
    group_parser = ns.pop("_parser", None)
    if func is None:
        (group_parser or parser).print_help()
        return 2
    try:
        result = func(**ns)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, KeyError, OSError, ImportError, TimeoutError) as e:
        from yulian.core.runnable import error_path

        where = error_path(e)
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {where + ': ' if where else ''}{message}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
