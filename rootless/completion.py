"""Shell completion scripts (`rsbox completion bash|zsh|fish`), generated from the
argparse tree, so a new verb or flag is completed the day it is added.

What is completed: verbs (and Docker's management forms, `container ls`), the flags of
each verb, and positional arguments by what they name: containers (from `rsbox ps -a
--format '{{.Names}}'`), images (`rsbox images --format '{{.Repository}}:{{.Tag}}'`),
files, or nothing. The dynamic lists come from the same `rsbox` the user typed, with
the same `--root`, so they show the store the command will use; no hidden subcommand.

bash and zsh get the same small function, each in its own dialect (zsh's bashcompinit
cannot run bash's read -a/mapfile); fish gets its own `complete` lines.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass

from rootless.aliases import GROUPS

# Positional kinds: c container, i image, f file, n nothing (a new name, a registry)
# A kind followed by "+" repeats to the end; "r" is a command line (files, as the shell
# does by default).
_IMAGE_DESTS = {"image", "images"}
_CONTAINER_DESTS = {"container", "containers"}
_IMAGE_SOURCES = {"push", "tag"}  # their `source` (and tag's `target`) are images
_FILES = {"source", "destination", "path", "profile"}


@dataclass(frozen=True)
class Verb:
    flags: tuple[str, ...]  # every option string
    value_flags: tuple[str, ...]  # those that take a value
    positionals: tuple[str, ...]  # kinds, e.g. ("c+",) or ("i", "r")
    subverbs: tuple[str, ...] = ()  # for groups: `image inspect`, `system df`


def _kind(verb: str, action: argparse.Action) -> str:
    dest = action.dest
    if action.nargs == argparse.REMAINDER:
        return "r"
    if dest in _CONTAINER_DESTS:
        kind = "c"
    elif dest in _IMAGE_DESTS or (verb in _IMAGE_SOURCES and dest in ("source", "target")):
        kind = "i"
    elif dest in _FILES:
        kind = "f"
    else:
        kind = "n"
    return kind + "+" if action.nargs in ("+", "*") else kind


def _subparsers(
    parser: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _verb(name: str, parser: argparse.ArgumentParser, subverbs: tuple[str, ...] = ()) -> Verb:
    flags: list[str] = []
    value_flags: list[str] = []
    positionals: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        if action.option_strings:
            flags += action.option_strings
            if action.nargs != 0:
                value_flags += action.option_strings
        else:
            positionals.append(_kind(name, action))
    return Verb(tuple(flags), tuple(value_flags), tuple(positionals), subverbs)


def command_table(parser: argparse.ArgumentParser) -> dict[str, Verb]:
    """``{"": top level, "run": ..., "image:inspect": ..., "container:ls": <ps>}``."""
    table = {"": _verb("", parser)}
    top = _subparsers(parser)
    assert top is not None
    for name, sub in top.choices.items():
        nested = _subparsers(sub)
        names: list[str] = []
        if nested is not None:
            for subname, subparser in nested.choices.items():
                table[f"{name}:{subname}"] = _verb(subname, subparser)
                names.append(subname)
        for alias, target in GROUPS.get(name, {}).items():
            if target in top.choices and f"{name}:{alias}" not in table:
                table[f"{name}:{alias}"] = _verb(target, top.choices[target])
                names.append(alias)
        table[name] = _verb(name, sub, tuple(sorted(set(names))))
    return table


def _verbs(table: dict[str, Verb]) -> list[str]:
    """The top-level verbs (no management form `image:inspect`, no top level "")."""
    return sorted(k for k in table if k and ":" not in k)


def _tables(table: dict[str, Verb]) -> list[tuple[str, Iterator[tuple[str, str]]]]:
    """The associative arrays the bash and zsh functions read, as (name, key/value pairs);
    each shell writes them in its own dialect."""
    rows = sorted(table.items())
    return [
        ("_rsbox_subverbs", ((v, " ".join(table[v].subverbs)) for v in _verbs(table))),
        ("_rsbox_flags", (("rsbox" if k == "" else k, " ".join(v.flags)) for k, v in rows)),
        ("_rsbox_value_flags", ((k, " ".join(v.value_flags)) for k, v in rows if k)),
        ("_rsbox_positionals", ((k, " ".join(v.positionals)) for k, v in rows if k)),
    ]


def _bash_assoc(name: str, items: Iterator[tuple[str, str]]) -> str:
    body = "\n".join(f"    [{key!s}]={_quote(value)}" for key, value in items)
    return f"declare -gA {name}=(\n{body}\n)"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


_BASH_FUNCTION = r"""
# The words up to the cursor, split on blanks only: an image reference keeps its ':'.
_rsbox_complete() {
    local line="${COMP_LINE:0:COMP_POINT}" words=() i=1 verb="" npos=0 root=() word
    read -ra words <<< "$line"
    [[ -z $line || $line == *[[:blank:]] ]] && words+=("")
    local last=$(( ${#words[@]} - 1 )) cur="${words[-1]}" prev=""
    (( last > 0 )) && prev="${words[last-1]}"
    while (( i < last )); do
        word="${words[i]}"
        if [[ -z $verb ]]; then
            case "$word" in
                --root) root=(--root "${words[i+1]}"); (( i += 2 )); continue ;;
                --root=*) root=("$word") ;;
                -*) ;;
                *) verb="$word"
                   if [[ -n ${_rsbox_verbs[$verb]+x} && -n ${_rsbox_subverbs[$verb]} ]] \
                       && (( i + 1 < last )); then
                       (( i++ )); verb="$verb:${words[i]}"
                   fi ;;
            esac
        elif [[ $word == -* ]]; then
            [[ $word != *=* && " ${_rsbox_value_flags[$verb]} " == *" $word "* ]] && (( i++ ))
        else
            (( npos++ ))
        fi
        (( i++ ))
    done
    local replies=()
    if [[ -z $verb ]]; then
        if [[ $prev == --root ]]; then
            mapfile -t replies < <(compgen -d -- "$cur")
        elif [[ $cur == -* ]]; then
            mapfile -t replies < <(compgen -W "${_rsbox_flags[rsbox]}" -- "$cur")
        else
            mapfile -t replies < <(compgen -W "${!_rsbox_verbs[*]}" -- "$cur")
        fi
    elif [[ -z ${_rsbox_flags[$verb]+x} ]]; then
        :
    elif [[ -n ${_rsbox_subverbs[$verb]} ]]; then
        mapfile -t replies < <(compgen -W "${_rsbox_subverbs[$verb]}" -- "$cur")
    elif [[ $prev == -* && $prev != *=* && " ${_rsbox_value_flags[$verb]} " == *" $prev "* ]]; then
        mapfile -t replies < <(compgen -f -- "$cur")
    elif [[ $cur == -* ]]; then
        mapfile -t replies < <(compgen -W "${_rsbox_flags[$verb]}" -- "$cur")
    else
        local kinds=(${_rsbox_positionals[$verb]}) kind=""
        if (( npos < ${#kinds[@]} )); then
            kind="${kinds[npos]}"
        elif (( ${#kinds[@]} > 0 )) && [[ ${kinds[-1]} == *+ || ${kinds[-1]} == r ]]; then
            kind="${kinds[-1]}"
        fi
        case "${kind%+}" in
            c) mapfile -t replies < <(compgen -W "$("${words[0]}" "${root[@]}" ps -a \
                   --format '{{.Names}}' 2>/dev/null)" -- "$cur") ;;
            i) mapfile -t replies < <(compgen -W "$("${words[0]}" "${root[@]}" images \
                   --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | grep -v '<none>')" \
                   -- "$cur") ;;
            f|r) mapfile -t replies < <(compgen -f -- "$cur") ;;
        esac
    fi
    # bash splits words at ':' (COMP_WORDBREAKS): reply with what follows the last one.
    if [[ $cur == *:* && $COMP_WORDBREAKS == *:* ]]; then
        local strip="${cur%"${cur##*:}"}" n
        for n in "${!replies[@]}"; do replies[n]="${replies[n]#"$strip"}"; done
    fi
    COMPREPLY=("${replies[@]}")
}
complete -o default -F _rsbox_complete rsbox
"""


def bash_script(parser: argparse.ArgumentParser) -> str:
    table = command_table(parser)
    verbs = _verbs(table)
    parts = [
        "# rsbox completion for bash (`rsbox completion bash`); generated from rsbox's parser.",
        "# Install: rsbox completion bash > ~/.local/share/bash-completion/completions/rsbox",
        _bash_assoc("_rsbox_verbs", ((v, "1") for v in verbs)),
        *(_bash_assoc(name, items) for name, items in _tables(table)),
        _BASH_FUNCTION.strip(),
    ]
    return "\n".join(parts) + "\n"


_ZSH_FUNCTION = r"""
_rsbox() {
    local i=2 verb="" npos=0 word cur=${words[CURRENT]} prev=${words[CURRENT-1]} kind=""
    local -a root kinds
    while (( i < CURRENT )); do
        word=${words[i]}
        if [[ -z $verb ]]; then
            case $word in
                --root) root=(--root ${words[i+1]}); (( i += 2 )); continue ;;
                --root=*) root=($word) ;;
                -*) ;;
                *) verb=$word
                   if [[ -n ${_rsbox_subverbs[$verb]} ]] && (( i + 1 < CURRENT )); then
                       (( i++ )); verb="$verb:${words[i]}"
                   fi ;;
            esac
        elif [[ $word == -* ]]; then
            [[ $word != *=* && " ${_rsbox_value_flags[$verb]} " == *" $word "* ]] && (( i++ ))
        else
            (( npos++ ))
        fi
        (( i++ ))
    done
    if [[ -z $verb ]]; then
        if [[ $prev == --root ]]; then _directories
        elif [[ $cur == -* ]]; then compadd -- ${=_rsbox_flags[rsbox]}
        else compadd -- ${(k)_rsbox_subverbs}
        fi
    elif (( ! ${+_rsbox_flags[$verb]} )); then
        return 1
    elif [[ -n ${_rsbox_subverbs[$verb]} ]]; then
        compadd -- ${=_rsbox_subverbs[$verb]}
    elif [[ $prev == -* && $prev != *=* && " ${_rsbox_value_flags[$verb]} " == *" $prev "* ]]; then
        _files
    elif [[ $cur == -* ]]; then
        compadd -- ${=_rsbox_flags[$verb]}
    else
        kinds=(${=_rsbox_positionals[$verb]})
        if (( npos < ${#kinds} )); then
            kind=${kinds[npos+1]}
        elif (( ${#kinds} )) && [[ ${kinds[-1]} == *+ || ${kinds[-1]} == r ]]; then
            kind=${kinds[-1]}
        fi
        case ${kind%+} in
            c) compadd -- ${(f)"$(${words[1]} $root ps -a --format '{{.Names}}' 2>/dev/null)"} ;;
            i) compadd -- ${(f)"$(${words[1]} $root images \
                   --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | grep -v '<none>')"} ;;
            f|r) _files ;;
        esac
    fi
}
(( $+functions[compdef] )) || { autoload -U compinit && compinit -C }
compdef _rsbox rsbox
"""


def _zsh_assoc(name: str, items: Iterator[tuple[str, str]]) -> str:
    body = "\n".join(f"    {_quote(key)} {_quote(value)}" for key, value in items)
    return f"typeset -gA {name}\n{name}=(\n{body}\n)"


def zsh_script(parser: argparse.ArgumentParser) -> str:
    table = command_table(parser)
    parts = [
        "# rsbox completion for zsh (`rsbox completion zsh`); generated from rsbox's parser.",
        "# Install: add `source <(rsbox completion zsh)` to ~/.zshrc",
        *(_zsh_assoc(name, items) for name, items in _tables(table)),
        _ZSH_FUNCTION.strip(),
    ]
    return "\n".join(parts) + "\n"


_FISH_DYNAMIC = {
    "c": "(__rsbox_list ps -a --format '{{.Names}}')",
    "i": "(__rsbox_list images --format '{{.Repository}}:{{.Tag}}' | string match -v '*<none>*')",
}
_FISH_HELPER = """function __rsbox_list --description 'rsbox with the --root of the command line'
    set -l tokens (commandline -opc)
    set -l args
    if set -l i (contains -i -- --root $tokens)
        set args --root $tokens[(math $i + 1)]
    end
    $tokens[1] $args $argv 2>/dev/null
end"""


def fish_script(parser: argparse.ArgumentParser) -> str:
    table = command_table(parser)
    verbs = _verbs(table)
    lines = [
        "# rsbox completion for fish (`rsbox completion fish`); generated from rsbox's parser.",
        "# Install: rsbox completion fish > ~/.config/fish/completions/rsbox.fish",
        _FISH_HELPER,
        "complete -c rsbox -f",
        "complete -c rsbox -n __fish_use_subcommand -l root -r -a '(__fish_complete_directories)'",
        f"complete -c rsbox -n __fish_use_subcommand -a {_quote(' '.join(verbs))}",
    ]
    for key, verb in sorted(table.items()):
        if not key:
            continue
        group, _, sub = key.partition(":")
        cond = f"__fish_seen_subcommand_from {group}"
        if sub:
            cond += f"; and __fish_seen_subcommand_from {sub}"
        if verb.subverbs:
            lines.append(
                f"complete -c rsbox -n {_quote(cond)} -a {_quote(' '.join(verb.subverbs))}"
            )
            continue
        for flag in verb.flags:
            opt = f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}"
            takes = " -r" if flag in verb.value_flags else ""
            lines.append(f"complete -c rsbox -n {_quote(cond)} {opt}{takes}")
        for kind in dict.fromkeys(k.rstrip("+") for k in verb.positionals):
            if kind in _FISH_DYNAMIC:
                lines.append(
                    f"complete -c rsbox -n {_quote(cond)} -a {_quote(_FISH_DYNAMIC[kind])}"
                )
            elif kind in ("f", "r"):
                lines.append(f"complete -c rsbox -n {_quote(cond)} -F")
    return "\n".join(lines) + "\n"


SHELLS = {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}
