"""`rsbox hook bash|zsh|fish`: the text a shell's rc file evals so that, at each prompt,
a trusted project's `.rsbox/bin` is first on PATH inside the project and off it
outside (and swapped when going from one project to another).

All of it runs in the shell itself: a Python start per prompt (~20-40 ms here under
load) is more than the whole budget, so the hook walks up from $PWD with the shell's
own tests and string operations (no process at all outside a project) and, inside one,
computes the trust record's name as rootless.env.trust.record_path does, with
`sha256sum` (two small processes, four forks: ~4 ms of CPU). Once a config was found
trusted, later prompts start no process while its record exists and the config is not
newer than the record (`-nt`, nanoseconds): an edit, `untrust` or a re-trust is seen at
the next prompt. A file swapped in with an older mtime would leave PATH as it was; the
shims are not fooled by it, since each call checks trust again in rsbox (the hook only
arranges PATH). The store whose records it
reads is the one `rsbox hook` ran with (`rsbox --root DIR hook bash` bakes DIR in).

An untrusted or edited config leaves PATH as it is (or takes the project's bin off),
and says so on stderr once per directory and state, not at every prompt.
"""

from __future__ import annotations

import os
import shlex

from rootless.env.trust import DIRNAME

# bash and zsh share the body; {cd} is the shell's quiet `cd -P` (zsh's `-q` skips the
# user's chpwd hooks, bash has none), {trust} the quoted trust directory.
_POSIX = r"""
_rsbox_hook() {
  local rc=$? d=$PWD f= k= real= bin= note= p  # rc: a prompt may show the last status
  while :; do
    if [[ -f $d/rsbox.toml ]]; then f=$d/rsbox.toml; break; fi
    if [[ -f $d/.devcontainer/devcontainer.json ]]; then
      f=$d/.devcontainer/devcontainer.json; break
    fi
    [[ -z $d ]] && break
    d=${d%/*}
  done
  if [[ -n $f && $f == "${_RSBOX_F:-}" && -e $_RSBOX_REC && ! $f -nt $_RSBOX_REC ]]; then
    bin=${d:-}/.rsbox/bin  # trusted at the last look and not modified since: no process
  elif [[ -n $f ]]; then
    # the record's name: sha256(real dir/NAME + "\n" + sha256 of the bytes). The real
    # directory costs a subshell only when a directory on the way is a symlink; each
    # sha256sum costs a fork and an exec, the printf feeding the second one a fork.
    real=$f p=${f%/*}
    while [[ -n $p ]]; do
      if [[ -L $p ]]; then
        real=$({cd} -- "${f%/*}" 2>/dev/null && printf '%s' "${PWD%/}/${f##*/}"); break
      fi
      p=${p%/*}
    done
    { read -r p _; } < <(sha256sum < "$f" 2>/dev/null)
    { read -r k _; } < <(sha256sum < <(printf '%s\n%s' "$real" "$p"))
    if [[ -n $k && -e {trust}/$k ]]; then
      bin=${d:-}/.rsbox/bin; _RSBOX_F=$f; _RSBOX_REC={trust}/$k
    else
      note="$PWD|$k"; _RSBOX_F=
    fi
  fi
  if [[ $bin != "${_RSBOX_BIN:-}" ]]; then
    if [[ -n ${_RSBOX_BIN:-} ]]; then
      p=":$PATH:"; p=${p//":$_RSBOX_BIN:"/:}; p=${p#:}; PATH=${p%:}
    fi
    [[ -n $bin ]] && PATH=$bin:$PATH
    _RSBOX_BIN=$bin
  fi
  if [[ -n $note && $note != "${_RSBOX_NOTE:-}" ]]; then
    if [[ -n $real ]] && grep -rqsxF -- "$real" {trust}; then
      printf 'rsbox: %s changed since it was trusted: .rsbox/bin is off PATH (hint: review it, then rsbox env trust)\n' "$f" >&2
    else
      printf 'rsbox: %s is not trusted: .rsbox/bin is not put on PATH (hint: rsbox env trust)\n' "$f" >&2
    fi
  fi
  _RSBOX_NOTE=$note
  return $rc
}
"""

_BASH = (
    _POSIX.replace("{cd}", "builtin cd -P")
    + r"""if [[ ";${PROMPT_COMMAND:-};" != *";_rsbox_hook;"* ]]; then
  PROMPT_COMMAND="_rsbox_hook${PROMPT_COMMAND:+;$PROMPT_COMMAND}"
fi
"""
)

_ZSH = (
    _POSIX.replace("{cd}", "builtin cd -q -P")
    + r"""autoload -Uz add-zsh-hook
add-zsh-hook precmd _rsbox_hook
"""
)

# fish: command substitutions run in the shell itself (a `cd` there would move the
# user), so the real directory comes from the `path resolve` builtin (fish 3.5+).
_FISH = r"""
function _rsbox_hook --on-event fish_prompt
    set -l d $PWD
    set -l f
    while true
        if test -f "$d/rsbox.toml"
            set f "$d/rsbox.toml"; break
        end
        if test -f "$d/.devcontainer/devcontainer.json"
            set f "$d/.devcontainer/devcontainer.json"; break
        end
        test -z "$d"; and break
        set d (string replace -r '/[^/]*$' '' -- $d)
    end
    set -l k
    set -l real
    set -l bin
    set -l note
    if test -n "$f" -a "$f" = "$_rsbox_f"; and test -e "$_rsbox_rec" -a ! "$f" -nt "$_rsbox_rec"
        set bin $d/.rsbox/bin  # trusted at the last look and not modified since
    else if test -n "$f"
        set -l dir (string replace -r '/[^/]*$' '' -- $f)
        set real (path resolve -- $dir)/(string replace -r '^.*/' '' -- $f)
        set -l h (sha256sum < $f | string split -f1 ' ')
        set k (printf '%s\n%s' $real $h | sha256sum | string split -f1 ' ')
        if test -n "$k" -a -e {trust}/$k
            set bin $d/.rsbox/bin
            set -g _rsbox_f $f
            set -g _rsbox_rec {trust}/$k
        else
            set note "$PWD|$k"
            set -g _rsbox_f
        end
    end
    if test "$bin" != "$_rsbox_bin"
        if test -n "$_rsbox_bin"
            while set -l i (contains -i -- $_rsbox_bin $PATH)
                set -e PATH[$i]
            end
        end
        if test -n "$bin"
            set -gx PATH $bin $PATH
        end
        set -g _rsbox_bin $bin
    end
    if test -n "$note" -a "$note" != "$_rsbox_note"
        if grep -rqsxF -- $real {trust}
            printf 'rsbox: %s changed since it was trusted: .rsbox/bin is off PATH (hint: review it, then rsbox env trust)\n' $f >&2
        else
            printf 'rsbox: %s is not trusted: .rsbox/bin is not put on PATH (hint: rsbox env trust)\n' $f >&2
        end
    end
    set -g _rsbox_note $note
end
"""


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def hook_text(shell: str, store_root: str) -> str:
    """The hook for `shell` (bash, zsh or fish), reading the records of `store_root`."""
    trust = os.path.join(os.path.abspath(store_root), DIRNAME)
    head = f"# rsbox hook {shell}: .rsbox/bin of a trusted project first on PATH\n"
    if shell == "fish":
        return head + _FISH.replace("{trust}", _fish_quote(trust)).lstrip("\n")
    body = _BASH if shell == "bash" else _ZSH
    return head + body.replace("{trust}", shlex.quote(trust)).lstrip("\n")
