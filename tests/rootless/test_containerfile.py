"""The Containerfile front end: the word lexer and expansion (shellwords), the parser
(containerfile), and ARG scoping with per-instruction expansion (evaluate).

Expectations that are not obvious cite where Docker's behaviour comes from:
  [lex]      buildkit frontend/dockerfile/shell/envVarTest and wordsTest (lexer tables)
  [tf/NAME]  buildkit frontend/dockerfile/parser/testfiles/NAME (Dockerfile + result)
  [heredoc]  buildkit frontend/dockerfile/parser/parser_heredoc_test.go
  [ref]      the Dockerfile reference, frontend/dockerfile/docs/reference.md
  [code]     buildkit's own code, named where cited
"""

from __future__ import annotations

import pytest

from rootless.errors import BuildError
from rootless.images.containerfile import (
    Add,
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Heredoc,
    Instruction,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
    parse,
    parse_instruction,
    shell_command,
)
from rootless.images.evaluate import (
    PLATFORM_ARGS,
    Platform,
    Step,
    evaluate,
    global_scope,
    host_platform,
    parse_platform,
    platform_args,
    proxy_env,
    resolve_from,
    resolve_stage_env,
)
from rootless.images.shellwords import expand, expand_heredoc, expand_words


def one(body: str) -> Instruction:
    """The first instruction of `body` placed after a FROM line (so it is on line 2)."""
    return parse("FROM base\n" + body).stages[0].instructions[0]


def error(text: str) -> BuildError:
    with pytest.raises(BuildError) as info:
        parse(text)
    assert info.value.hint, "every error carries a hint"
    return info.value


# --- the lexer ------------------------------------------------------------------------------

ENV = {"PWD": "/home", "SHELL": "bash", "NULL": "", "S": "foobarbaz"}


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("hello", "hello"),
        ("he'll'o", "hello"),  # [lex]
        ("he\\'llo", "he'llo"),
        ("abc\\tdef", "abctdef"),  # an escape outside quotes makes t literal [lex]
        ('"abc\\tdef"', "abc\\tdef"),  # inside "...": \ only escapes " $ \ [lex]
        ('"abc\\\\tdef"', "abc\\tdef"),
        ("'abc\\tdef'", "abc\\tdef"),
        ("hello\\", "hello"),  # a trailing escape is dropped [lex]
        ("hello\\\\", "hello\\"),
        ("\"''\"", "''"),
        ("$.", "$."),  # $ not followed by a name is literal [lex]
        ("he$1x", "hex"),  # positional parameters are never set [lex]
        ("he$PWD", "he/home"),
        ("he\\$PWD", "he$PWD"),
        ("he\\\\$PWD", "he\\/home"),
        ('"he\\$PWD"', "he$PWD"),
        ("'he\\$PWD'", "he\\$PWD"),  # nothing escapes in single quotes
        ("'$PWD'", "$PWD"),
        ('"$PWD"', "/home"),
        ("\"he'$PWD'\"", "he'/home'"),
        ("\\${}", "${}"),
        ("he${hi}xx", "hexx"),
        ("${PWD}x", "/homex"),
        ("$PWDx", ""),  # the name is PWDx, unset
        ("he${XXX:-000}xx", "he000xx"),
        ("he${PWD:-000}xx", "he/homexx"),
        ("he${XXX:-${PWD:-yyy}}xx", "he/homexx"),
        ("he${XXX:-${YYY:-yyy}}xx", "heyyyxx"),
        ("${NULL:-d}", "d"),  # :- treats empty as unset [ref]
        ("${NULL-d}", ""),  # - only unset [ref]
        ("${XXX-d}", "d"),
        ("he${XXX:+000}xx", "hexx"),
        ("he${PWD:+000}xx", "he000xx"),
        ("${NULL:+alt}", ""),  # [ref]
        ("${NULL+alt}", "alt"),  # + set even if empty [ref]
        ("${XXX+alt}", ""),
        ("he${PWD?}", "he/home"),
        ("he${NULL?}", "he"),
        ('${XXX:-"a  b"}', "a  b"),  # the word is lexed: quotes removed
        ("he${PWD:+${PWD}:}xx", "he/home:xx"),  # [lex]
        ("he${XXX:-\\$PWD:}xx", "he$PWD:xx"),
        ("${aaa}}", "}"),
        ("${aaa:-bbb {foo}", "bbb {foo"),
        ("${1:-bbb}", "bbb"),
        ("안'녕'하세요", "안녕하세요"),
        # the pattern forms [ref] (examples from the reference)
        ("${S#f*b}", "arbaz"),
        ("${S##f*b}", "az"),
        ("${S%b*}", "foobar"),
        ("${S%%b*}", "foo"),
        ("${S/ba/fo}", "fooforbaz"),
        ("${S//ba/fo}", "fooforfoz"),
        ("${S#x}", "foobarbaz"),
        ("${S/b?z/\\*}", "foobar\\*"),  # replacement keeps raw escapes, as BuildKit
    ],
)
def test_expand(word: str, expected: str) -> None:
    assert expand(word, ENV) == expected


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("he'llo", "single-quote"),
        ("he\\\\'llo", "single-quote"),  # [lex] the escape escapes the escape
        ('"hello', "double-quote"),
        ('"hello\\"', "double-quote"),
        ("${}", "bad substitution"),
        ("${:}", "bad substitution"),
        ("${:-bbb}", "bad substitution"),
        ("${{aaa}", "bad substitution"),
        ("he${.}", "unsupported modifier"),
        ("he${XXX:YYY}", "unsupported modifier (:Y)"),
        ("he${PWD:=000}xx", "unsupported modifier (:=)"),  # := is not supported [lex]
        ("${S:#x}", "unsupported modifier (:#)"),
        ("he${PWD", "missing '}'"),
        ("${aaa:-bbb ${foo}", "missing '}'"),
        ("${S/a", "missing '/'"),
        ("${XXX:?}", "XXX: is not allowed to be unset"),
        ("${NULL:?}", "NULL: is not allowed to be empty"),
        ("${XXX?must be set}", "XXX: must be set"),
        ("${S#\\x}", "invalid escape"),
    ],
)
def test_expand_errors_say_what_is_wrong(word: str, message: str) -> None:
    with pytest.raises(BuildError, match="failed to process") as info:
        expand(word, ENV)
    assert message in info.value.message


def test_backtick_is_the_escape_after_the_directive() -> None:
    assert expand("`$PWD a`\\b", ENV, escape="`") == "$PWD a\\b"
    assert expand('"`"x"', ENV, escape="`") == '"x'


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("hello there", ["hello", "there"]),  # [lex] wordsTest
        ("hello${space}bye", ["helloabc", "defbye"]),  # variable values split
        ('hello"${space}"bye', ["helloabc  defbye"]),  # quoted values do not
        ("hello\\ there", ["hello there"]),
        ('hello\\" there', ['hello"', "there"]),
        ("hello'$there'", ["hello$there"]),
        ("80 ${PORTS}", ["80", "443", "8080"]),
        ("p${X:-1}", ["p1"]),  # BuildKit loses "p" here (shared buffer); we do not
    ],
)
def test_expand_words(text: str, words: list[str]) -> None:
    env = {"space": "abc  def", "PORTS": "443 8080"}
    assert expand_words(text, env) == words


def test_heredoc_bodies_expand_without_quote_processing() -> None:
    # BuildKit's ExpandRaw: quotes are text, $ still expands, \ is always the escape
    assert expand_heredoc("'$PWD' \"${SHELL}\" \\$PWD\n", ENV) == "'/home' \"bash\" $PWD\n"


# --- lines, comments, continuations, directives ---------------------------------------------


def test_comments_blank_lines_and_line_numbers() -> None:
    cf = parse("# a comment\n\nFROM a\n  # indented comment\n\nRUN one # not a comment\n")
    [run] = cf.stages[0].instructions
    assert cf.stages[0].line == 3
    assert run == Run(
        line=6, source="RUN one # not a comment", args=("one # not a comment",), exec_form=False
    )


@pytest.mark.parametrize(
    ("body", "command"),
    [
        # [tf/continueIndent]: the next line is appended as is, indentation kept
        (
            "RUN echo hello\\\n  world\\\n  goodnight  \\\n  moon\n",
            "echo hello  world  goodnight    moon",
        ),
        ("RUN echo hello \\\ngoodbye\\\nfrog\n", "echo hello goodbyefrog"),
        ("RUN echo hello  \\  \nworld\n", "echo hello  world"),  # blanks after the escape
        # blank lines and comments inside a continuation are skipped [tf/continueIndent]
        ("RUN echo hello \\\n# comment\n\n  # indented\nworld\n", "echo hello world"),
        ("RUN foo \\\n\nbar \\\n\nbaz\n", "foo bar baz"),  # [tf/escapes]
        ("RUN a\\\n\\\nb\n", "ab"),  # an escape alone on a line continues [tf/trailing-backslash]
        ("RUN a \\\n", "a"),  # continued past the end of the file [tf/continue-at-eof]
        ("RUN a \\\\\n", "a \\\\"),  # an escaped escape does not continue [tf/trailing-backslash]
        ("RUN a\\\r\n b\r\n", "a b"),  # CRLF
    ],
)
def test_continuations(body: str, command: str) -> None:
    run = one(body)
    assert isinstance(run, Run) and run.args == (command,) and run.line == 2


def test_line_numbers_count_continued_and_skipped_lines() -> None:
    cf = parse("FROM a\nRUN a \\\n  b \\\n\n  c\n# x\nRUN d\n")
    assert [i.line for i in cf.stages[0].instructions] == [2, 7]


@pytest.mark.parametrize(
    ("text", "escape", "syntax"),
    [
        ("# escape=`\nFROM a\nRUN a `\n b\n", "`", None),
        ("#escape = `\n\nFROM a\n", "`", None),  # spaces around = [tf/escape]
        ("# EScape=`\nFROM a\n", "`", None),  # the key is case-insensitive [directives_test]
        ("# syntax=docker/dockerfile:1\n# escape=`\nFROM a\n", "`", "docker/dockerfile:1"),
        ("  # escape=`\nFROM a\n", "`", None),
        ("\ufeff# escape=`\nFROM a\n", "`", None),  # a BOM before the first directive
        # directives stop at the first line that is not one [tf/escape-after-comment]
        ("# a comment\n# escape=`\nFROM a\n", "\\", None),
        ("\n# escape=`\nFROM a\n", "\\", None),
        ("# key=value\n# escape=`\nFROM a\n", "\\", None),  # an unknown key ends them
        ("FROM a\n# escape=`\n", "\\", None),
    ],
)
def test_parser_directives(text: str, escape: str, syntax: str | None) -> None:
    cf = parse(text)
    assert (cf.escape, cf.syntax) == (escape, syntax)


def test_backtick_escape_continues_lines_and_leaves_backslashes() -> None:
    # [tf/escape]: with escape=` a backslash is an ordinary character
    cf = parse("# escape=`\nFROM a\nENV GOPATH `\n\\go\nRUN dir c:\\ `\n  /w\n")
    env, run = cf.stages[0].instructions
    assert isinstance(env, Env) and env.pairs == (("GOPATH", "\\go"),)
    assert isinstance(run, Run) and run.args == ("dir c:\\   /w",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# escape=`\n# escape=\\\nFROM a\n", "line 2: escape directive: only one escape"),
        ("# escape=x\nFROM a\n", "line 1: escape directive: invalid escape token 'x'"),
    ],
)
def test_directive_errors(text: str, message: str) -> None:
    assert error(text).message.startswith(message)


# --- FROM and stages --------------------------------------------------------------------------


def test_stages_names_indexes_platform_and_global_args() -> None:
    cf = parse(
        "ARG BASE=debian:12\nARG A B=2\n"
        "from --platform=$BUILDPLATFORM ${BASE} As Build\nRUN make\n"
        "FROM scratch\nCOPY --from=build /out /\n"
    )
    build, final = cf.stages
    assert (build.name, build.index, build.base, build.platform, build.line) == (
        "build", 0, "${BASE}", "$BUILDPLATFORM", 3,
    )  # fmt: skip
    assert (final.name, final.index, final.base, final.platform) == (None, 1, "scratch", None)
    assert [(a.name, a.default, a.line) for a in cf.global_args] == [
        ("BASE", "debian:12", 1), ("A", None, 2), ("B", "2", 2),
    ]  # fmt: skip
    assert cf.find_stage("BUILD") is build
    assert cf.find_stage("1", index_ok=True) is final
    assert cf.find_stage("debian") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM a AS 1st\n", "line 1: FROM: invalid name for build stage: '1st'"),
        ("FROM a AS b!\n", "line 1: FROM: invalid name"),
        ("FROM a b\n", "line 1: FROM: requires either one or three arguments"),
        ("FROM\n", "line 1: FROM: requires either one or three arguments"),
        ("FROM a AS x\nFROM b AS X\n", "line 2: FROM: duplicate stage name 'x'"),
        ("FROM --platform linux/amd64 a\n", "line 1: FROM: missing a value on flag: --platform"),
        ("RUN x\nFROM a\n", "line 1: RUN: no build stage yet"),
        ("ARG A\n", "the file has no FROM instruction"),
        ("# only a comment\n\n", "the file has no instructions"),
        ("", "the file has no instructions"),
    ],
)
def test_stage_errors(text: str, message: str) -> None:
    assert error(text).message.startswith(message)


def test_find_stage_index_out_of_range() -> None:
    with pytest.raises(BuildError, match="invalid stage index 3"):
        parse("FROM a\n").find_stage("3", index_ok=True)


# --- one instruction of each kind ----------------------------------------------------------


def i(cls: type[Instruction], source: str, **fields: object) -> Instruction:
    """The expected instruction on line 2 (after the FROM line `one` adds)."""
    return cls(line=2, source=source, **fields)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # RUN: shell form is the text as written, exec form a JSON array
        (
            "RUN apt-get install -y x",
            i(Run, "RUN apt-get install -y x", args=("apt-get install -y x",), exec_form=False),
        ),
        (
            'run ["echo", "a b"]',
            i(Run, 'run ["echo", "a b"]', args=("echo", "a b"), exec_form=True),
        ),
        # invalid JSON falls back to the shell form [tf/jeztah-invalid-json-*]
        ("RUN ['a','b']", i(Run, "RUN ['a','b']", args=("['a','b']",), exec_form=False)),
        ('RUN ["a", "b"', i(Run, 'RUN ["a", "b"', args=('["a", "b"',), exec_form=False)),
        ('RUN ["a"] x', i(Run, 'RUN ["a"] x', args=('["a"] x',), exec_form=False)),
        ('RUN ["a", NaN]', i(Run, 'RUN ["a", NaN]', args=('["a", NaN]',), exec_form=False)),
        # JSON escapes as Go decodes them [tf/json]
        (
            'CMD ["\\" \\\\ \\/ \\t \\u0041"]',
            i(Cmd, 'CMD ["\\" \\\\ \\/ \\t \\u0041"]', args=('" \\ / \t A',), exec_form=True),
        ),
        ("CMD []", i(Cmd, "CMD []", args=(), exec_form=True)),
        ('CMD [""]', i(Cmd, 'CMD [""]', args=("",), exec_form=True)),
        ('CMD\t[\t"a",\t"b"\t]\t', i(Cmd, 'CMD\t[\t"a",\t"b"\t]', args=("a", "b"), exec_form=True)),
        ("CMD echo $HOME", i(Cmd, "CMD echo $HOME", args=("echo $HOME",), exec_form=False)),
        ("ENTRYPOINT []", i(Entrypoint, "ENTRYPOINT []", args=(), exec_form=True)),
        (
            "ENTRYPOINT exec app",
            i(Entrypoint, "ENTRYPOINT exec app", args=("exec app",), exec_form=False),
        ),
        (
            'SHELL ["/bin/bash", "-eo", "pipefail", "-c"]',
            i(
                Shell,
                'SHELL ["/bin/bash", "-eo", "pipefail", "-c"]',
                args=("/bin/bash", "-eo", "pipefail", "-c"),
            ),
        ),
        # ENV: KEY=VALUE words keep quotes and escapes for the expansion [tf/env]
        (
            'ENV a=1 b="x y" c=\\ z d=',
            i(
                Env,
                'ENV a=1 b="x y" c=\\ z d=',
                pairs=(("a", "1"), ("b", '"x y"'), ("c", "\\ z"), ("d", "")),
            ),
        ),
        (
            "ENV name value with  spaces",
            i(
                Env,
                "ENV name value with  spaces",
                pairs=(("name", "value with  spaces"),),
                legacy=True,
            ),
        ),
        ("ENV name='a\\'b'", i(Env, "ENV name='a\\'b'", pairs=(("name", "'a\\'b'"),))),
        ('LABEL a=b "c d"=e', i(Label, 'LABEL a=b "c d"=e', pairs=(("a", "b"), ('"c d"', "e")))),
        (
            "LABEL maintainer Jo <j@x>",
            i(Label, "LABEL maintainer Jo <j@x>", pairs=(("maintainer", "Jo <j@x>"),)),
        ),
        ("ARG V", i(Arg, "ARG V", name="V", default=None)),
        ("ARG V=", i(Arg, "ARG V=", name="V", default="")),
        ('ARG V="a b"', i(Arg, 'ARG V="a b"', name="V", default='"a b"')),
        # USER WORKDIR STOPSIGNAL MAINTAINER: the rest of the line is one argument
        ("USER app:app", i(User, "USER app:app", user="app:app")),
        ("WORKDIR /a b", i(Workdir, "WORKDIR /a b", path="/a b")),
        ("STOPSIGNAL SIGINT", i(StopSignal, "STOPSIGNAL SIGINT", signal="SIGINT")),
        ("MAINTAINER Jo <j@x>", i(Maintainer, "MAINTAINER Jo <j@x>", name="Jo <j@x>")),
        ("EXPOSE 80 53/udp $P", i(Expose, "EXPOSE 80 53/udp $P", ports=("80", "53/udp", "$P"))),
        ('VOLUME ["/a", "/b c"]', i(Volume, 'VOLUME ["/a", "/b c"]', paths=("/a", "/b c"))),
        ("VOLUME /a /b", i(Volume, "VOLUME /a /b", paths=("/a", "/b"))),
        # COPY/ADD: words split on blanks, or JSON for names with spaces [tf/ADD-COPY-with-JSON]
        ("COPY a b /dst/", i(Copy, "COPY a b /dst/", sources=("a", "b"), dest="/dst/")),
        (
            'COPY ["test file", "/tmp/"]',
            i(Copy, 'COPY ["test file", "/tmp/"]', sources=("test file",), dest="/tmp/"),
        ),
        (
            "COPY --from=build --chown=app:app --chmod=0755 --link --exclude=*.md --exclude=x /o /",
            i(
                Copy,
                "COPY --from=build --chown=app:app --chmod=0755 --link --exclude=*.md --exclude=x /o /",
                sources=("/o",),
                dest="/",
                from_="build",
                chown="app:app",
                chmod="0755",
                link=True,
                excludes=("*.md", "x"),
            ),
        ),
        (
            "COPY --link=false --parents a /",
            i(Copy, "COPY --link=false --parents a /", sources=("a",), dest="/", parents=True),
        ),
        (
            "COPY --chown='a b' x /",
            i(Copy, "COPY --chown='a b' x /", sources=("x",), dest="/", chown="a b"),
        ),
        # a quote before -- is not a flag: the word is a source [code] split_command.go
        (
            "COPY '--chown=a' x /",
            i(Copy, "COPY '--chown=a' x /", sources=("'--chown=a'", "x"), dest="/"),
        ),
        (
            "ADD --checksum=sha256:ab --unpack=true --keep-git-dir=false u.tgz /",
            i(
                Add,
                "ADD --checksum=sha256:ab --unpack=true --keep-git-dir=false u.tgz /",
                sources=("u.tgz",),
                dest="/",
                checksum="sha256:ab",
                unpack=True,
                keep_git_dir=False,
            ),
        ),
        ("ADD -- --odd /", i(Add, "ADD -- --odd /", sources=("--odd",), dest="/")),  # -- ends flags
    ],
)
def test_instruction(body: str, expected: Instruction) -> None:
    assert one(body) == expected


def test_run_flags_are_recorded() -> None:
    run = one(
        "RUN --mount=type=cache,target=/root/.cache --mount=type=bind,from=b,target=/b "
        "--network=none --security=insecure make"
    )
    assert isinstance(run, Run)
    assert run.mounts == ("type=cache,target=/root/.cache", "type=bind,from=b,target=/b")
    assert (run.network, run.security, run.args) == ("none", "insecure", ("make",))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("HEALTHCHECK NONE", Healthcheck(line=2, source="HEALTHCHECK NONE", kind="NONE")),
        # [tf/health]
        (
            "HEALTHCHECK --interval=5s --timeout=3s --retries=3 \\\n  CMD /app/check.sh --quiet",
            Healthcheck(
                line=2, source="HEALTHCHECK --interval=5s --timeout=3s --retries=3   CMD /app/check.sh --quiet",
                kind="CMD", args=("/app/check.sh --quiet",), interval=5 * 10**9, timeout=3 * 10**9, retries=3,
            ),
        ),
        (
            'HEALTHCHECK --start-period=1m30s --start-interval=0.5s --timeout=0s CMD ["foo", "x"]',
            Healthcheck(
                line=2, source='HEALTHCHECK --start-period=1m30s --start-interval=0.5s --timeout=0s CMD ["foo", "x"]',
                kind="CMD", args=("foo", "x"), exec_form=True, start_period=90 * 10**9, start_interval=5 * 10**8,
            ),
        ),
    ],
)  # fmt: skip
def test_healthcheck(body: str, expected: Healthcheck) -> None:
    assert one(body) == expected


def test_healthcheck_test_is_the_image_config_form() -> None:
    shell = one("HEALTHCHECK CMD curl -f http://x/")
    exec_ = one('HEALTHCHECK CMD ["curl", "-f"]')
    none = one("HEALTHCHECK none")
    assert isinstance(shell, Healthcheck) and shell.test == ("CMD-SHELL", "curl -f http://x/")
    assert isinstance(exec_, Healthcheck) and exec_.test == ("CMD", "curl", "-f")
    assert isinstance(none, Healthcheck) and none.test == ("NONE",)


def test_onbuild_records_the_trigger_parsed() -> None:
    ob = one("ONBUILD COPY --chown=a . /src")
    assert isinstance(ob, Onbuild)
    assert ob.expression == "COPY --chown=a . /src"
    assert ob.instruction == Copy(
        line=2, source="COPY --chown=a . /src", sources=(".",), dest="/src", chown="a"
    )
    # [tf/lk4d4-the-edge-case-generator]
    run = one('onbuild RUN ["echo", "test"]')
    assert isinstance(run, Onbuild) and run.instruction == Run(
        line=2, source='RUN ["echo", "test"]', args=("echo", "test"), exec_form=True
    )


def test_maintainer_is_a_label() -> None:
    m = one("MAINTAINER Jo")
    assert isinstance(m, Maintainer) and m.label == ("maintainer", "Jo")


def test_keywords_are_case_insensitive() -> None:
    cf = parse("from a\nRuN x\ncopy a b\nEnV a=b\n")
    assert [type(x) for x in cf.stages[0].instructions] == [Run, Copy, Env]


def test_arg_with_several_names_gives_one_arg_each() -> None:
    cf = parse('FROM a\nARG A=1 B "C"=3\n')
    assert [(a.name, a.default) for a in cf.stages[0].instructions if isinstance(a, Arg)] == [
        ("A", "1"), ("B", None), ('"C"', "3"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("FOO bar", "line 2: unknown instruction: FOO"),
        ("RUN", "line 2: RUN: requires a command"),
        ("RUN []", "line 2: RUN: requires a command"),
        (
            'RUN ["a", 1]',
            "line 2: RUN: when using JSON array syntax, arrays must be comprised of strings only",
        ),
        ("RUN --network=bridge x", "line 2: RUN: invalid network mode 'bridge'"),
        ("RUN --security=x y", "line 2: RUN: security 'x' is not valid"),
        ("RUN --device=/dev/x y", "line 2: RUN: unknown flag: --device"),
        ("RUN --network=none --network=host x", "line 2: RUN: duplicate flag specified: --network"),
        ("CMD --help", "line 2: CMD: unknown flag: --help"),  # flags parse before arguments
        ("COPY a", "line 2: COPY: requires at least two arguments"),
        ('COPY ["a"]', "line 2: COPY: requires at least two arguments"),
        ("COPY a <<EOF\nEOF", "line 2: COPY: cannot accept a heredoc as a destination"),
        ("COPY --link= a b", "line 2: COPY: missing a value on flag: --link"),
        ("COPY --link=yes a b", "line 2: COPY: expecting boolean value for flag --link, not: yes"),
        ("COPY --from a b", "line 2: COPY: missing a value on flag: --from"),
        ("COPY --checksum=x a b", "line 2: COPY: unknown flag: --checksum"),
        ("ADD --from=x a b", "line 2: ADD: unknown flag: --from"),
        ("ENV", "line 2: ENV: requires at least one argument"),
        ("ENV onlykey", "line 2: ENV: must have two arguments"),
        ("ENV a=1 b", "line 2: ENV: can't find = in 'b'"),
        ("ENV =1", "line 2: ENV: names can not be blank"),
        ("LABEL a=1 b", "line 2: LABEL: can't find = in 'b'"),
        ("ARG", "line 2: ARG: requires at least one argument"),
        ("ARG =x", "line 2: ARG: names can not be blank"),
        ("USER", "line 2: USER: requires exactly one argument"),
        ("WORKDIR", "line 2: WORKDIR: requires exactly one argument"),
        ("STOPSIGNAL", "line 2: STOPSIGNAL: requires exactly one argument"),
        ("EXPOSE", "line 2: EXPOSE: requires at least one argument"),
        ("VOLUME", "line 2: VOLUME: requires at least one argument"),
        ('VOLUME ["/a", " "]', "line 2: VOLUME: a volume path can not be an empty string"),
        ("SHELL /bin/bash -c", "line 2: SHELL: requires the arguments to be in JSON form"),
        ("SHELL []", "line 2: SHELL: requires at least one argument"),
        ("HEALTHCHECK", "line 2: HEALTHCHECK: requires at least one argument"),
        ("HEALTHCHECK NONE x", "line 2: HEALTHCHECK: HEALTHCHECK NONE takes no arguments"),
        ("HEALTHCHECK CONNECT TCP 7000", "line 2: HEALTHCHECK: unknown type 'CONNECT'"),
        ("HEALTHCHECK CMD", "line 2: HEALTHCHECK: missing command after HEALTHCHECK CMD"),
        ("HEALTHCHECK CMD []", "line 2: HEALTHCHECK: missing command after HEALTHCHECK CMD"),
        ("HEALTHCHECK --retries=-1 CMD x", "line 2: HEALTHCHECK: --retries must be a whole number"),
        (
            "HEALTHCHECK --interval=5 CMD x",
            "line 2: HEALTHCHECK: --interval: time: invalid duration '5'",
        ),
        (
            "HEALTHCHECK --timeout=10us CMD x",
            "line 2: HEALTHCHECK: --timeout cannot be less than 1ms",
        ),
        ("HEALTHCHECK --port=1 CMD x", "line 2: HEALTHCHECK: unknown flag: --port"),
        ("ONBUILD", "line 2: ONBUILD: requires at least one argument"),
        (
            "ONBUILD ONBUILD RUN x",
            "line 2: ONBUILD: chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        ),
        ("ONBUILD FROM x", "line 2: ONBUILD: FROM isn't allowed as an ONBUILD trigger"),
        ("ONBUILD MAINTAINER x", "line 2: ONBUILD: MAINTAINER isn't allowed as an ONBUILD trigger"),
        ("ONBUILD FOO x", "line 2: unknown instruction: FOO"),
        ("MAINTAINER", "line 2: MAINTAINER: requires exactly one argument"),
    ],
)
def test_instruction_errors_name_line_and_instruction(body: str, message: str) -> None:
    assert error("FROM a\n" + body + "\n").message.startswith(message)


def test_unknown_instruction_suggests_the_closest() -> None:
    assert error("FROM a\nCOPPY a b\n").hint == "did you mean COPY?"


def test_error_line_is_the_first_line_of_a_continued_instruction() -> None:
    assert error("FROM a\n\nRUN a \\\n  b \\\n  --x\nCOPY \\\n  a\n").message.startswith(
        "line 6: COPY: requires at least two arguments"
    )


# --- heredocs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "heredocs"),
    [
        ("RUN <<EOF\necho hi\nEOF", [Heredoc("EOF", "echo hi\n", True)]),
        ("RUN <<EMPTY\nEMPTY", [Heredoc("EMPTY", "", True)]),  # [heredoc]
        ("RUN 3<<X\nx\nX", [Heredoc("X", "x\n", True, fd=3)]),
        ("RUN <<INDENT\n\tfoo\n\tbar\nINDENT", [Heredoc("INDENT", "\tfoo\n\tbar\n", True)]),
        # <<- strips leading tabs, also from the delimiter line [heredoc]
        ("RUN <<-U\n\tbaz\n\tquux\n\tU", [Heredoc("U", "\tbaz\n\tquux\n", True, chomp=True)]),
        (
            "RUN <<-'NOEXPAND'\n\t$NAME\nNOEXPAND",
            [Heredoc("NOEXPAND", "\t$NAME\n", False, chomp=True)],
        ),
        ('RUN <<"E"\nx\nE', [Heredoc("E", "x\n", False)]),
        ("RUN <<eo'f'\necho foo\neof", [Heredoc("eof", "echo foo\n", False)]),  # [heredoc]
        ("RUN <<eo\\'f\necho foo\neo'f", [Heredoc("eo'f", "echo foo\n", True)]),
        ("RUN <<'one two'\necho bar\none two", [Heredoc("one two", "echo bar\n", False)]),
        ("RUN <<$EOF\n$EOF", [Heredoc("$EOF", "", True)]),
        ("RUN <<  EOF  > foo\nEOF", [Heredoc("EOF", "", True)]),
        ("RUN << -EOF\n-EOF", [Heredoc("-EOF", "", True)]),  # [heredoc] TestHeredocsFromLine
        # comments and continuations inside a body are text [heredoc]
        ("RUN <<C\n# internal\necho \\\nC", [Heredoc("C", "# internal\necho \\\n", True)]),
        ("RUN --mount=type=cache,target=/f <<M\necho\nM", [Heredoc("M", "echo\n", True)]),
        # several heredocs on one line: bodies follow in order [heredoc]
        ("RUN <<A <<B python3\nY\nA\nX\nB", [Heredoc("A", "Y\n", True), Heredoc("B", "X\n", True)]),
        (
            "RUN a\\\n  <<EOF\nx\nEOF",
            [Heredoc("EOF", "x\n", True)],
        ),  # an opener on a continued line
        # not heredocs: quoted, JSON form, instructions without heredocs [heredoc]
        ('RUN "<<NOHEREDOC"', []),
        ("RUN '<<EOF'", []),
        ('RUN ["<<EOF"]', []),
        ("RUN echo <<", []),
        ("RUN echo a<<b", []),
    ],
)
def test_run_heredocs(body: str, heredocs: list[Heredoc]) -> None:
    run = one(body + "\n")
    assert isinstance(run, Run) and list(run.heredocs) == heredocs


def test_heredoc_body_chomps_tabs() -> None:
    assert Heredoc("U", "\tbaz\n\t\tquux\n  x\n", True, chomp=True).body == "baz\nquux\n  x\n"
    assert Heredoc("U", "\tbaz\n", True).body == "\tbaz\n"


def test_lines_after_a_heredoc_keep_their_numbers() -> None:
    cf = parse("FROM a\nRUN <<EOF\n1\n2\nEOF\nUSER x <<NOT\nCOPY <<F /f\nF\nRUN y\n")
    assert [(type(x).__name__, x.line) for x in cf.stages[0].instructions] == [
        ("Run", 2), ("User", 6), ("Copy", 7), ("Run", 9),
    ]  # fmt: skip


def test_copy_heredocs_are_inline_files() -> None:
    copy = one(
        'COPY --chmod=0755 <<run.sh <<-"conf" src /dest/\n#!/bin/sh\nrun.sh\n\tk=$v\n\tconf\n'
    )
    assert isinstance(copy, Copy)
    assert copy.sources == ("src",) and copy.dest == "/dest/" and copy.chmod == "0755"
    assert copy.heredocs == (
        Heredoc("run.sh", "#!/bin/sh\n", True),
        Heredoc("conf", "\tk=$v\n", False, chomp=True),
    )
    # [heredoc] COPY <<X <<Y: each body ends at its own delimiter
    crossed = one("COPY <<X <<Y /dest\nY\nX\nX\nY\n")
    assert isinstance(crossed, Copy)
    assert crossed.heredocs == (Heredoc("X", "Y\n", True), Heredoc("Y", "X\n", True))


def test_add_takes_heredocs_and_onbuild_folds_them_into_the_expression() -> None:
    add = one("ADD <<f /f\nx\nf\n")
    assert isinstance(add, Add) and add.heredocs == (Heredoc("f", "x\n", True),)
    ob = one("ONBUILD RUN <<EOF\necho hi\nEOF\n")
    assert isinstance(ob, Onbuild)
    assert ob.expression == "RUN <<EOF\necho hi\nEOF"
    assert isinstance(ob.instruction, Run)
    assert ob.instruction.heredocs == (Heredoc("EOF", "echo hi\n", True),)
    assert parse_instruction(ob.expression) == Run(
        line=1, source="RUN <<EOF", args=("<<EOF",), exec_form=False,
        heredocs=(Heredoc("EOF", "echo hi\n", True),),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM a\nRUN <<EOF\necho\n", "line 2: RUN: unterminated heredoc <<EOF"),
        ("FROM a\nRUN <<A <<B\nA\nB2\n", "line 2: RUN: unterminated heredoc <<B"),
        # a line the lexer cannot split opens no heredoc, so EOF is an instruction (BuildKit)
        ("FROM a\nCOPY <<'EOF /x\nEOF\n", "line 3: unknown instruction: EOF"),
        ("FROM a\nRUN <<EOF\n  EOF\n", "line 2: RUN: unterminated heredoc"),  # only tabs strip
    ],
)
def test_heredoc_errors(text: str, message: str) -> None:
    assert error(text).message.startswith(message)


@pytest.mark.parametrize(
    ("body", "script"),
    [
        ("RUN <<EOF\necho hi\nEOF", "echo hi\n"),  # only a heredoc: the body is the script
        ("RUN <<-EOF\n\techo hi\n\tEOF", "echo hi\n"),
        ("RUN cat <<A >/a && cat <<B >/b\n1\nA\n2\nB", "cat <<A >/a && cat <<B >/b\n1\nA\n2\nB"),
        ("RUN <<EOF bash\nset -e\nEOF", "<<EOF bash\nset -e\nEOF"),
        ("RUN echo hi", "echo hi"),
    ],
)
def test_shell_command_folds_heredocs_as_buildkit(body: str, script: str) -> None:
    # [code] dockerfile2llb/convert.go dispatchRun
    run = one(body + "\n")
    assert isinstance(run, Run) and shell_command(run) == script


def test_parse_instruction_refuses_several_or_from() -> None:
    with pytest.raises(BuildError, match="expected one instruction, found 2"):
        parse_instruction("ENV a=1\nENV b=2")
    with pytest.raises(BuildError, match="FROM starts a stage"):
        parse_instruction("FROM x")
    assert parse_instruction("ENV a `\n b", escape="`") == Env(
        line=1, source="ENV a  b", pairs=(("a", "b"),), legacy=True
    )


# --- ARG scoping and expansion ---------------------------------------------------------------

AMD64 = platform_args(Platform("linux", "amd64"), Platform("linux", "arm64"))


def steps(
    text: str, build_args: dict[str, str] | None = None, base_env: dict[str, str] | None = None
) -> list[Step]:
    cf = parse(text)
    args = build_args or {}
    scope = global_scope(cf, args, AMD64)
    return list(evaluate(cf, cf.stages[-1], build_args=args, scope=scope, base_env=base_env or {}))


def expanded(
    text: str, build_args: dict[str, str] | None = None, base_env: dict[str, str] | None = None
) -> list[Instruction]:
    return [s.instruction for s in steps(text, build_args, base_env)]


def test_platform_args() -> None:
    assert AMD64 == {
        "BUILDPLATFORM": "linux/amd64", "BUILDOS": "linux", "BUILDARCH": "amd64", "BUILDVARIANT": "",
        "TARGETPLATFORM": "linux/arm64", "TARGETOS": "linux", "TARGETARCH": "arm64", "TARGETVARIANT": "",
    }  # fmt: skip
    assert set(AMD64) == set(PLATFORM_ARGS)
    assert host_platform().os == "linux" and host_platform().arch
    assert parse_platform("linux/arm/v7") == Platform("linux", "arm", "v7")
    assert str(parse_platform("Linux/AMD64")) == "linux/amd64"
    with pytest.raises(BuildError, match="invalid platform"):
        parse_platform("amd64")


def test_proxy_args_are_predefined() -> None:
    # [ref] "Predefined ARGs": RUN gets them without an ARG line; not in history or cache
    build_args = {"HTTPS_PROXY": "http://p:3128", "no_proxy": "x", "OTHER": "1"}
    assert proxy_env(build_args) == {"HTTPS_PROXY": "http://p:3128", "no_proxy": "x"}


def test_global_scope_and_from_lines() -> None:
    cf = parse(
        "ARG REG=docker.io\nARG IMG=$REG/library/debian\nARG TAG\nARG TARGETARCH\n"
        "FROM --platform=$BUILDPLATFORM ${IMG}:${TAG:-12}-$TARGETARCH AS b\n"
    )
    scope = global_scope(cf, {"TAG": "13", "UNUSED": "x"}, AMD64)
    assert scope["IMG"] == "docker.io/library/debian"  # defaults expand in order
    assert scope["TAG"] == "13"  # --build-arg beats the (missing) default
    assert scope["TARGETARCH"] == "arm64"  # ARG NAME keeps the platform value
    assert "UNUSED" not in scope  # undeclared build args are not in scope
    stage = resolve_from(cf, cf.stages[0], scope)
    assert (stage.base, stage.platform) == ("docker.io/library/debian:13-arm64", "linux/amd64")
    # a --build-arg overrides a platform arg of the same name [code] platform.go defaultArgs
    assert global_scope(cf, {"TARGETARCH": "riscv64"}, AMD64)["TARGETARCH"] == "riscv64"
    assert global_scope(cf, {"REG": "r.example"}, AMD64)["IMG"] == "r.example/library/debian"


def test_from_that_expands_to_nothing_is_an_error() -> None:
    cf = parse("ARG IMG\nFROM $IMG\n")
    with pytest.raises(BuildError, match=r"line 2: FROM: base name \(\$IMG\) should not be blank"):
        resolve_from(cf, cf.stages[0], global_scope(cf, {}, AMD64))
    cf = parse("ARG P\nFROM --platform=$P a\n")
    with pytest.raises(BuildError, match="line 2: FROM: empty platform value"):
        resolve_from(cf, cf.stages[0], global_scope(cf, {}, AMD64))


def test_global_args_must_be_redeclared_inside_a_stage() -> None:
    # [ref] "An ARG declared before a FROM is outside of a build stage, so it can't be used
    # in any instruction after a FROM. To use the default value ... use an ARG instruction
    # without a value inside of a build stage"
    text = "ARG V=1.0\nARG TARGETARCH\nFROM a\nWORKDIR /$V-$TARGETARCH\nARG V\nARG TARGETARCH\nWORKDIR /$V-$TARGETARCH\n"
    w1, _, _, w2 = expanded(text)
    assert isinstance(w1, Workdir) and w1.path == "/-"
    assert isinstance(w2, Workdir) and w2.path == "/1.0-arm64"


@pytest.mark.parametrize(
    ("arg_line", "build_args", "user"),
    [
        ("ARG V", {}, "global"),  # inherits the global value
        ("ARG V", {"V": "cli"}, "cli"),
        ("ARG V=stage", {}, "stage"),  # its own default beats the global one
        ("ARG V=stage", {"V": "cli"}, "cli"),  # --build-arg beats both
        ("ARG W", {}, "unset"),  # never declared globally, no build arg: unset
        ("ARG W", {"W": ""}, ""),  # an empty build arg is a value
    ],
)
def test_arg_value_in_a_stage(arg_line: str, build_args: dict[str, str], user: str) -> None:
    name = arg_line.split()[1].partition("=")[0]
    text = f"ARG V=global\nFROM a\n{arg_line}\nUSER ${{{name}-unset}}\n"
    arg, got = expanded(text, build_args)
    assert isinstance(got, User) and got.user == user
    assert isinstance(arg, Arg) and arg.default == (None if user == "unset" else user)


def test_undeclared_build_args_are_invisible() -> None:
    [user] = expanded("FROM a\nUSER ${X:-none}\n", {"X": "set"})
    assert isinstance(user, User) and user.user == "none"


def test_env_and_arg_share_one_environment_later_wins() -> None:
    # [ref] "ENV overrides ARG": an ENV after the ARG wins ...
    text = "FROM a\nARG V=arg\nENV V=env\nUSER $V\nARG V=again\nUSER $V\n"
    _, _, u1, _, u2 = expanded(text, {"V": "cli"})
    assert isinstance(u1, User) and u1.user == "env"
    # ... and an ARG with a value after it wins again, as in BuildKit ([code] convert.go
    # dispatchArg adds the value to the same environment; moby/moby#36925 discussion)
    assert isinstance(u2, User) and u2.user == "cli"


def test_arg_without_value_does_not_hide_the_base_env() -> None:
    [_, user] = expanded("FROM a\nARG HOME\nUSER $HOME\n", base_env={"HOME": "/root"})
    assert isinstance(user, User) and user.user == "/root"


def test_env_pairs_expand_against_the_previous_environment() -> None:
    # [ref] "ENV abc=hello / ENV abc=bye def=$abc / ENV ghi=$abc": def=hello, ghi=bye
    cf = parse("FROM a\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n")
    env = resolve_stage_env(cf, cf.stages[0], build_args={}, scope={})
    assert env == {"abc": "bye", "def": "hello", "ghi": "bye"}


def test_resolve_stage_env_includes_base_and_arg_values() -> None:
    cf = parse("FROM a\nARG X=1\nENV PATH=/opt/bin:$PATH\n")
    env = resolve_stage_env(
        cf, cf.stages[0], build_args={}, scope={}, base_env={"PATH": "/usr/bin", "LANG": "C"}
    )
    assert env == {"PATH": "/opt/bin:/usr/bin", "LANG": "C", "X": "1"}


def test_steps_carry_the_environment_a_run_sees() -> None:
    arg, env, run = steps("FROM a\nARG V=1\nENV E=$V\nRUN echo $V $E\n", base_env={"B": "b"})
    assert dict(arg.env) == {"B": "b"} and dict(arg.args) == {}
    assert dict(env.env) == {"B": "b", "V": "1"}
    assert dict(run.env) == {"B": "b", "V": "1", "E": "1"} and dict(run.args) == {"V": "1"}
    # RUN is left to the shell: not expanded
    assert isinstance(run.instruction, Run) and run.instruction.args == ("echo $V $E",)


def test_which_instructions_expand() -> None:
    text = (
        "FROM a\nARG D=/dst P=8080 U=app N=x\n"
        "COPY --chown=$U:$U --chmod=0${N:+755} ${N}.txt '$N' $D/\n"
        "ADD --checksum=sha256:$N $N $D\n"
        "ENV ${N}_HOME=$D\n"
        'LABEL $N="v $P"\n'
        "EXPOSE $P 53/udp\n"
        "VOLUME $D/v\n"
        "USER $U\n"
        "WORKDIR $D\n"
        "STOPSIGNAL SIG${N:+TERM}\n"
        "RUN echo $D\n"
        "CMD echo $D\n"
        'ENTRYPOINT ["$D"]\n'
        'SHELL ["/bin/$N"]\n'
        "HEALTHCHECK CMD $D\n"
        "ONBUILD COPY $N /\n"
        "MAINTAINER $U\n"
    )
    got = expanded(text)[4:]  # after the four Args
    copy = got[0]
    assert isinstance(copy, Copy)
    assert (copy.sources, copy.dest, copy.chown, copy.chmod) == (
        ("x.txt", "$N"),
        "/dst/",
        "app:app",
        "0755",
    )
    add, env, label, expose, volume, user, workdir, stop = got[1:9]
    assert isinstance(add, Add) and (add.sources, add.dest, add.checksum) == (
        ("x",),
        "/dst",
        "sha256:x",
    )
    assert isinstance(env, Env) and env.pairs == (("x_HOME", "/dst"),)
    assert isinstance(label, Label) and label.pairs == (("x", "v 8080"),)
    assert isinstance(expose, Expose) and expose.ports == ("8080", "53/udp")
    assert isinstance(volume, Volume) and volume.paths == ("/dst/v",)
    assert isinstance(user, User) and user.user == "app"
    assert isinstance(workdir, Workdir) and workdir.path == "/dst"
    assert isinstance(stop, StopSignal) and stop.signal == "SIGTERM"
    untouched = parse(text).stages[0].instructions[13:]
    assert got[9:] == list(untouched)  # RUN CMD ENTRYPOINT SHELL HEALTHCHECK ONBUILD MAINTAINER


def test_copy_sources_with_spaces_need_the_json_form() -> None:
    # Non-JSON COPY splits on blanks before expansion, so a quoted name with a space is two
    # broken words, as in Docker ([code] line_parsers.go parseMaybeJSONToList)
    with pytest.raises(BuildError, match=r"line 2: COPY: .*matching double-quote"):
        expanded('FROM a\nCOPY "a b" /x\n')
    [copy] = expanded('FROM a\nCOPY ["a b", "/x"]\n')
    assert isinstance(copy, Copy) and copy.sources == ("a b",)


def test_expose_may_become_several_ports() -> None:
    [_, expose] = expanded('FROM a\nARG PORTS="80 443"\nEXPOSE $PORTS 22\n')
    assert isinstance(expose, Expose) and expose.ports == ("80", "443", "22")


def test_copy_heredocs_expand_unless_quoted() -> None:
    text = "FROM a\nARG V=1\nCOPY <<a <<-'b' <<-c /d/\n'$V' \"$V\"\na\n\t$V\n\tb\n\t$V\nc\n"
    [_, copy] = expanded(text)
    assert isinstance(copy, Copy)
    assert [(h.name, h.content, h.chomp) for h in copy.heredocs] == [
        ("a", "'1' \"1\"\n", False), ("b", "$V\n", False), ("c", "1\n", False),
    ]  # fmt: skip


def test_copy_from_may_not_hold_a_variable() -> None:
    # [code] convert.go toCommand: "variable expansion is not supported for --from"
    with pytest.raises(
        BuildError, match="line 3: COPY: variable expansion is not supported for --from"
    ):
        expanded("FROM a\nARG S=b\nCOPY --from=$S /x /y\n")
    [copy] = expanded("FROM a\nCOPY --from=b /x /y\n")
    assert isinstance(copy, Copy) and copy.from_ == "b"


def test_run_mount_values_expand() -> None:
    [_, run] = expanded("FROM a\nARG T=/c\nRUN --mount=type=cache,target=$T,ro x\n")
    assert isinstance(run, Run) and run.mounts == ("type=cache,target=/c,ro",)
    with pytest.raises(BuildError, match="line 2: RUN: 'from' doesn't support variable expansion"):
        expanded("FROM a\nRUN --mount=from=$S,target=/s x\n")


def test_expansion_errors_name_line_and_instruction() -> None:
    with pytest.raises(BuildError, match=r"line 3: WORKDIR: failed to process '\$\{A'"):
        expanded("FROM a\nRUN x\nWORKDIR ${A\n")
    with pytest.raises(BuildError, match=r"line 2: ARG: .*X: needX"):
        expanded("FROM a\nARG Y=${X?needX}\n")
    cf = parse("ARG Y=${X:?}\nFROM a\n")
    with pytest.raises(BuildError, match=r"line 1: ARG: .*X: is not allowed to be unset"):
        global_scope(cf, {}, AMD64)


def test_backtick_escape_applies_to_expansion() -> None:
    [_, user] = expanded("# escape=`\nFROM a\nARG U=app\nUSER `$U:$U\n")
    assert isinstance(user, User) and user.user == "$U:app"
