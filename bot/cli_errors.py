"""Command-line mistakes told in Chinese, like everything else the product says.

click reports a wrong command line in English ("No such option '--bogus'.").
Its messages go through gettext's default domain, which a library cannot
translate without installing a catalogue for the whole process, so instead
the ``duban`` group catches click's errors and says the same thing in Chinese
from the structured fields each exception carries (the option's name, the
parameter, the value).  A message with no Chinese form here keeps click's own
words after a Chinese lead-in, so nothing is hidden.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click
from click.exceptions import BadOptionUsage, BadParameter, FileError, MissingParameter, NoSuchOption, UsageError

# click's wording of a bad value (types.py), and the Chinese it becomes; {0}, {1} are the groups.
_VALUE_MESSAGES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(.+) is not a valid integer\.?$"), "{0} 不是整数"),
    (re.compile(r"^(.+) is not a valid float\.?$"), "{0} 不是数字"),
    (re.compile(r"^(.+) is not a valid boolean\.?$"), "{0} 不是是/否值(可写 true 或 false)"),
    (re.compile(r"^(.+) is not a valid UUID\.?$"), "{0} 不是有效的编号"),
    (re.compile(r"^(.+) is not one of (.+)\.$"), "{0} 不在可选值之中,可选:{1}"),
    (re.compile(r"^(.+) is not (.+)\.$"), "{0} 不对,只能是 {1}"),
    (re.compile(r"^(.+) is not in the range (.+)\.$"), "{0} 超出范围 {1}"),
    (re.compile(r"^(?:File|Path) (.+) does not exist\.$"), "文件 {0} 不存在"),
    (re.compile(r"^Directory (.+) does not exist\.$"), "文件夹 {0} 不存在"),
    (re.compile(r"^(?:File|Path) (.+) is a directory\.$"), "{0} 是文件夹,应为文件"),
    (re.compile(r"^(?:Directory|Path) (.+) is a file\.$"), "{0} 是文件,应为文件夹"),
    (re.compile(r"^\w+ (.+) is not readable\.$"), "没有权限读取 {0}"),
    (re.compile(r"^\w+ (.+) is not writable\.$"), "没有权限写入 {0}"),
)
_EXTRA_ARGUMENTS = re.compile(r"^Got unexpected extra arguments? \((.*)\)$")
_NEEDS_VALUE = re.compile(r"^Option (.+) requires (?:an argument|\d+ arguments)\.$")
_TAKES_NO_VALUE = re.compile(r"^Option (.+) does not take a value\.$")


def _param_name(param: click.Parameter | None, hint: str | None = None) -> str:
    """How the user wrote (or should write) the parameter: ``--title`` for an option, ``UNIT`` for an argument."""
    if param is None:
        return hint or "参数"
    if isinstance(param, click.Option):
        return " / ".join(param.opts)
    return (param.metavar or param.name or "参数").upper()


def _value_problem(message: str) -> str:
    for pattern, chinese in _VALUE_MESSAGES:
        found = pattern.match(message.strip())
        if found:
            return chinese.format(*found.groups())
    return message


def chinese_message(exc: click.ClickException) -> str:
    """What went wrong with the command line, in one Chinese sentence."""
    if isinstance(exc, NoSuchOption):
        known = f",是否要用:{'、'.join(sorted(exc.possibilities))}" if exc.possibilities else ""
        return f"没有 {exc.option_name} 这个选项{known}"
    if isinstance(exc, MissingParameter):
        kind = "选项" if isinstance(exc.param, click.Option) else "参数"
        return f"缺少{kind} {_param_name(exc.param)}"
    if isinstance(exc, BadOptionUsage):
        if found := _NEEDS_VALUE.match(exc.message):
            return f"选项 {found.group(1).strip(chr(39))} 后面要写一个值"
        if found := _TAKES_NO_VALUE.match(exc.message):
            return f"选项 {found.group(1).strip(chr(39))} 不带值"
        return f"选项 {exc.option_name} 用法不对:{exc.message}"
    if isinstance(exc, BadParameter):
        hint = exc.param_hint if isinstance(exc.param_hint, str) else " / ".join(exc.param_hint or ())
        return f"{_param_name(exc.param, hint)} 的值不对:{_value_problem(exc.message)}"
    if isinstance(exc, FileError):
        return f"无法打开文件 {exc.ui_filename}:{exc.message}"
    command = getattr(exc, "command_name", None)  # click's NoSuchCommand (8.2 and later)
    if command is not None:
        near = getattr(exc, "possibilities", None)
        known = f",是否要用:{'、'.join(near)}" if near else ""
        return f"没有 {command} 这个命令{known}"
    if found := _EXTRA_ARGUMENTS.match(exc.message):
        return f"多余的参数:{found.group(1)}(含空格的值请加引号)"
    if exc.message == "Missing command.":
        return "缺少子命令"
    return f"命令有误:{exc.message}"


def report(exc: click.ClickException) -> NoReturn:
    """Say what was wrong (and, for a wrong command line, how it is used), then exit with click's code."""
    lines = [f"出错:{chinese_message(exc)}"]
    context = getattr(exc, "ctx", None)
    if isinstance(exc, UsageError) and context is not None:
        usage = context.get_usage().removeprefix("Usage:").strip()
        lines.append(f"用法:{usage}")
        lines.append(f"查看说明:{context.command_path} --help")
    click.echo("\n".join(lines), err=True)
    sys.exit(exc.exit_code)


class ChineseErrorsGroup(click.Group):
    """A click group whose command-line mistakes are reported in Chinese; its subgroups are the same."""

    group_class = type  # ``@group.group()`` makes groups of this class too

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any
    ) -> Any:
        extra.pop("standalone_mode", None)
        try:
            result = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            click.echo("已取消。", err=True)
            sys.exit(1)
        except click.ClickException as exc:
            report(exc)
        # Not standalone: click hands back what standalone mode would have exited with (--help: 0).
        sys.exit(result if isinstance(result, int) else 0)
