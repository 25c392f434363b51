"""The Dockerfile parser, checked against the examples of Docker's Dockerfile reference."""

# A Dockerfile snippet stays on one line so it reads as the file it stands for.
# ruff: noqa: E501

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from containerlab.build import dockerfile as d
from containerlab.build.dockerfile import (
    ArgArgs,
    Chown,
    CommandArgs,
    CopyArgs,
    ExposeArgs,
    HealthcheckArgs,
    Heredoc,
    KeyValueArgs,
    OnbuildArgs,
    PathArgs,
    Port,
    ShellArgs,
    SignalArgs,
    UserArgs,
    VolumeArgs,
    parse,
)
from containerlab.errors import BuildError, ContainerlabError

HOST = "linux/amd64"


def p(text: str, **kw) -> d.Dockerfile:
    kw.setdefault("host_platform", HOST)
    return parse(text, **kw)


def steps(text: str, **kw) -> tuple[d.Instruction, ...]:
    """The instructions of the last stage."""
    return p(text, **kw).stages[-1].instructions


def one(text: str, **kw) -> d.Instruction:
    (only,) = steps("FROM busybox\n" + text, **kw)
    return only


# --- every instruction ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "keyword", "args"),
    [
        ("RUN echo hi", "RUN", CommandArgs(True, ("echo hi",))),
        ('RUN ["echo", "hi"]', "RUN", CommandArgs(False, ("echo", "hi"))),
        ("run echo $HOME", "RUN", CommandArgs(True, ("echo $HOME",))),  # the shell expands
        ('CMD ["sh"]', "CMD", CommandArgs(False, ("sh",))),
        ("CMD []", "CMD", CommandArgs(False, ())),
        ('ENTRYPOINT ["top", "-b"]', "ENTRYPOINT", CommandArgs(False, ("top", "-b"))),
        ("ENTRYPOINT exec top -b", "ENTRYPOINT", CommandArgs(True, ("exec top -b",))),
        ('SHELL ["/bin/bash", "-c"]', "SHELL", ShellArgs(("/bin/bash", "-c"))),
        ("WORKDIR /a/b", "WORKDIR", PathArgs("/a/b")),
        ("USER 1000:1000", "USER", UserArgs("1000", "1000")),
        ("USER patrick", "USER", UserArgs("patrick", None)),
        ("STOPSIGNAL SIGKILL", "STOPSIGNAL", SignalArgs("SIGKILL")),
        ("STOPSIGNAL 9", "STOPSIGNAL", SignalArgs("9")),
        (
            'VOLUME ["/var/www", "/var/log/apache2"]',
            "VOLUME",
            VolumeArgs(("/var/www", "/var/log/apache2")),
        ),
        ("VOLUME /var/log /var/db", "VOLUME", VolumeArgs(("/var/log", "/var/db"))),
        ("EXPOSE 80 443", "EXPOSE", ExposeArgs((Port(80, "tcp"), Port(443, "tcp")))),
        ("EXPOSE 80/udp 53/TCP", "EXPOSE", ExposeArgs((Port(80, "udp"), Port(53, "tcp")))),
        (
            "EXPOSE 8000-8002",
            "EXPOSE",
            ExposeArgs(tuple(Port(n, "tcp") for n in (8000, 8001, 8002))),
        ),
        ("ENV MY_VAR my-value", "ENV", KeyValueArgs((("MY_VAR", "my-value"),))),
        ('LABEL version="1.0"', "LABEL", KeyValueArgs((("version", "1.0"),))),
        ("ONBUILD RUN make", "ONBUILD", OnbuildArgs("RUN make")),
        ("ARG user1=someuser", "ARG", ArgArgs((d.BuildArg("user1", "someuser", "someuser"),))),
        ("ARG a b=2", "ARG", ArgArgs((d.BuildArg("a", None, None), d.BuildArg("b", "2", "2")))),
    ],
)
def test_every_instruction(line: str, keyword: str, args: object) -> None:
    instruction = one(line)
    assert instruction.keyword == keyword
    assert instruction.args == args
    assert (instruction.line, instruction.column) == (2, 1)
    assert instruction.original == line


def test_copy_and_add_flags() -> None:
    copy = one("COPY --chown=55:mygroup --chmod=644 --link files* /somedir/").args
    assert copy == CopyArgs(
        sources=("files*",),
        dest="/somedir/",
        from_stage=None,
        from_index=None,
        chown=Chown("55", "mygroup"),
        chmod=0o644,
        link=True,
        exclude=(),
        heredocs=(),
    )
    assert one("COPY --chown=bin a /b").args.chown == Chown("bin", None)
    assert one("COPY --exclude=*.txt --exclude=*.md hom* /mydir/").args.exclude == ("*.txt", "*.md")
    add = one("ADD --unpack=false --checksum=sha256:abc my.tar.gz .").args
    assert (add.unpack, add.checksum, add.sources, add.dest) == (
        False,
        "sha256:abc",
        ("my.tar.gz",),
        ".",
    )
    json_form = one('COPY ["a b.txt", "/dir with space/"]').args
    assert (json_form.sources, json_form.dest) == (("a b.txt",), "/dir with space/")


def test_healthcheck() -> None:
    check = one(
        "HEALTHCHECK --interval=5m --timeout=3s --retries=4 \\\n  CMD curl -f http://localhost/ || exit 1"
    ).args
    assert check == HealthcheckArgs(
        ("CMD-SHELL", "curl -f http://localhost/ || exit 1"), 300 * 10**9, 3 * 10**9, None, None, 4
    )
    assert one('HEALTHCHECK CMD ["/bin/check", "-q"]').args.test == ("CMD", "/bin/check", "-q")
    assert one("HEALTHCHECK NONE").args.test == ("NONE",)
    hc = one("HEALTHCHECK --start-period=1m30s --start-interval=500ms CMD true").args
    assert (hc.start_period, hc.start_interval) == (90 * 10**9, 500 * 10**6)


def test_from_forms_and_stages() -> None:
    df = p(
        "FROM --platform=linux/amd64 busybox:1.36 AS Build\nRUN make\nFROM scratch\nCOPY --from=build /out /\n"
    )
    first, second = df.stages
    assert (first.name, first.base, first.platform, first.base_index) == (
        "build",
        "busybox:1.36",
        "linux/amd64",
        None,
    )
    assert (second.name, second.base) == (None, "scratch")
    assert second.instructions[0].args.from_index == 0
    assert first.from_instruction.args == d.FromArgs("busybox:1.36", "build", "linux/amd64")


# --- lines: comments, continuations, directives -----------------------------------------------


def test_comments_and_hash_inside_arguments() -> None:
    (run,) = steps("# Comment\nFROM busybox\nRUN echo 'we are running some # of cool things'\n")
    assert run.args.command == ("echo 'we are running some # of cool things'",)


def test_comment_lines_inside_a_continuation_are_dropped() -> None:
    (run,) = steps("FROM busybox\nRUN echo hello \\\n# comment\nworld\n")
    assert run.args.command == ("echo hello world",)
    assert (run.line, run.end_line) == (2, 4)


def test_leading_whitespace_of_instructions_and_comments_is_ignored() -> None:
    a = steps(
        "FROM busybox\n        # this is a comment-line\n    RUN echo hello\nRUN echo world\n"
    )
    assert [i.args.command for i in a] == [("echo hello",), ("echo world",)]
    assert (a[0].line, a[0].column) == (3, 5)


def test_whitespace_in_continued_arguments_is_kept() -> None:
    (run,) = steps('FROM busybox\nRUN echo "\\\n     hello\\\n     world"\n')
    assert run.args.command == ('echo "     hello     world"',)


def test_empty_continuation_lines_are_skipped_with_a_note() -> None:
    df = p("FROM busybox\nRUN echo a \\\n\n  b\n")
    assert df.stages[0].instructions[0].args.command == ("echo a   b",)
    assert any("empty continuation line" in n for n in df.notes)


def test_escape_directive_backtick() -> None:
    df = p("# escape=`\n\nFROM busybox\nCOPY testfile.txt c:\\\nRUN dir c:\\\nRUN a `\n  b\n")
    copy, run, cont = df.stages[0].instructions
    assert df.escape == "`"
    assert (copy.args.sources, copy.args.dest) == (("testfile.txt",), "c:\\")
    assert run.args.command == ("dir c:\\",)
    assert cont.args.command == ("a   b",)


def test_default_escape_joins_the_windows_example() -> None:
    # The reference's example of what goes wrong without `# escape=`: one COPY of 2 lines.
    (copy,) = steps("FROM microsoft/nanoserver\nCOPY testfile.txt c:\\\\\nRUN dir c:\\\n")
    assert copy.original == "COPY testfile.txt c:\\RUN dir c:"


def test_directives_only_at_the_top() -> None:
    after_comment = p("# About my dockerfile\n# escape=`\nFROM busybox\nRUN a \\\n b\n")
    assert after_comment.escape == "\\" and after_comment.directives == ()
    unknown_first = p("# unknowndirective=value\n# syntax=value\nFROM busybox\n")
    assert unknown_first.directives == () and unknown_first.notes == ()
    spaced = p("#\t  EsCaPe = `\nFROM busybox\n")
    assert spaced.escape == "`"


def test_syntax_directive_is_ignored_with_a_note() -> None:
    df = p("# syntax=docker/dockerfile:1\nFROM busybox\n")
    assert df.directives == (("syntax", "docker/dockerfile:1"),)
    assert "syntax directive 'docker/dockerfile:1' ignored" in df.notes[0]


def test_malformed_json_is_shell_form() -> None:
    run = one('RUN ["c:\\windows\\system32\\tasklist.exe"]').args
    assert run == CommandArgs(True, ('["c:\\windows\\system32\\tasklist.exe"]',))
    assert one("CMD ['single', 'quotes']").args.shell_form
    assert one('ENTRYPOINT ["a", 1]').args.shell_form


def test_crlf_and_bom() -> None:
    df = p("\ufeffFROM busybox\r\nRUN echo hi\r\n")
    assert df.stages[0].instructions[0].args.command == ("echo hi",)


# --- heredocs -------------------------------------------------------------------------------


def test_run_heredoc() -> None:
    (run,) = steps("FROM debian\nRUN <<EOT bash\n  set -ex\n  apt-get update\nEOT\nCMD x\n")[:1]
    assert run.args == CommandArgs(
        True, ("<<EOT bash",), (Heredoc("EOT", "  set -ex\n  apt-get update\n", True, False, None),)
    )
    assert (run.line, run.end_line) == (2, 5)


def test_run_two_heredocs() -> None:
    (run,) = steps(
        "FROM alpine\nRUN <<FILE1 cat > file1 && <<FILE2 cat > file2\nI am\nfirst\nFILE1\nI am\nsecond\nFILE2\n"
    )
    assert [h.content for h in run.args.heredocs] == ["I am\nfirst\n", "I am\nsecond\n"]


def test_copy_heredoc_expands_unless_quoted() -> None:
    text = 'FROM alpine\nARG FOO=bar\nCOPY <<-EOT /script.sh\n\techo "hello ${FOO}"\n\tEOT\n'
    copy = steps(text)[1].args
    assert copy.heredocs == (Heredoc("EOT", 'echo "hello bar"\n', True, True, None),)
    assert copy.dest == "/script.sh" and copy.sources == ()
    quoted = steps(text.replace("<<-EOT", '<<-"EOT"'))[1].args
    assert quoted.heredocs[0].content == 'echo "hello ${FOO}"\n'


# --- variables ------------------------------------------------------------------------------

MATRIX = [
    # (expression, value of V: str or None for unset, expected)
    ("${V:-word}", "x", "x"),
    ("${V:-word}", "", "word"),
    ("${V:-word}", None, "word"),
    ("${V-word}", "", ""),
    ("${V-word}", None, "word"),
    ("${V:+word}", "x", "word"),
    ("${V:+word}", "", ""),
    ("${V:+word}", None, ""),
    ("${V+word}", "", "word"),
    ("${V+word}", None, ""),
    ("$V", "x", "x"),
    ("${V}_bar", "x", "x_bar"),
    ("$V", None, ""),
    ("\\$V", "x", "$V"),
    ("\\${V}", "x", "${V}"),
    ("'$V'", "x", "$V"),
    ('"$V y"', "x", "x y"),
    ("${V:-$W}", None, "w"),
    ("a$", "x", "a$"),
]


@pytest.mark.parametrize(("expr", "value", "expected"), MATRIX)
def test_substitution_matrix(expr: str, value: str | None, expected: str) -> None:
    setup = "ENV W=w\n" + ("" if value is None else f"ENV V={value}\n")
    last = steps(f"FROM busybox\n{setup}WORKDIR /{expr}\n")[-1]
    assert last.args == PathArgs("/" + expected)


def test_reference_substitution_example() -> None:
    text = "FROM busybox\nENV FOO=/bar\nWORKDIR ${FOO}\nADD . $FOO\nCOPY \\$FOO /quux\n"
    _, workdir, add, copy = steps(text)
    assert workdir.args.path == "/bar"
    assert (add.args.sources, add.args.dest) == ((".",), "/bar")
    assert (copy.args.sources, copy.args.dest) == (("$FOO",), "/quux")


def test_env_values_use_the_previous_instruction_state() -> None:
    text = "FROM busybox\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n"
    _, second, third = steps(text)
    assert second.args.pairs == (("abc", "bye"), ("def", "hello"))
    assert third.args.pairs == (("ghi", "bye"),)


def test_env_and_label_forms() -> None:
    assert one(
        'ENV MY_NAME="John Doe" MY_DOG=Rex\\ The\\ Dog \\\n    MY_CAT=fluffy'
    ).args.pairs == (
        ("MY_NAME", "John Doe"),
        ("MY_DOG", "Rex The Dog"),
        ("MY_CAT", "fluffy"),
    )
    assert one("ENV ONE TWO= THREE=world").args.pairs == (("ONE", "TWO= THREE=world"),)
    assert one('LABEL "com.example.vendor"="ACME Incorporated"').args.pairs == (
        ("com.example.vendor", "ACME Incorporated"),
    )
    multi = one(
        'LABEL description="This text illustrates \\\nthat label-values can span multiple lines."'
    )
    assert multi.args.pairs == (
        ("description", "This text illustrates that label-values can span multiple lines."),
    )
    assert one("LABEL example='foo-$X'").args.pairs == (("example", "foo-$X"),)


def test_substitution_in_exactly_docker_s_instructions() -> None:
    text = (
        "FROM busybox\nENV P=80 U=app S=SIGINT D=/data\n"
        "EXPOSE $P\nUSER $U\nSTOPSIGNAL $S\nVOLUME $D\nLABEL l=$U\n"
        "RUN echo $U\nCMD echo $U\nENTRYPOINT echo $U\nHEALTHCHECK CMD echo $U\nONBUILD RUN echo $U\n"
    )
    s = steps(text)
    assert s[1].args.ports == (Port(80, "tcp"),)
    assert (
        s[2].args.user == "app" and s[3].args.signal == "SIGINT" and s[4].args.paths == ("/data",)
    )
    assert s[5].args.pairs == (("l", "app"),)
    assert [i.args.command for i in s[6:9]] == [("echo $U",)] * 3
    assert s[9].args.test == ("CMD-SHELL", "echo $U") and s[10].args.trigger == "RUN echo $U"


# --- ARG scoping ----------------------------------------------------------------------------


def test_arg_before_from_is_for_from_lines_only() -> None:
    df = p(
        "ARG CODE_VERSION=latest\nFROM base:${CODE_VERSION}\nWORKDIR /$CODE_VERSION\nFROM extras:${CODE_VERSION}\n"
    )
    assert [s.base for s in df.stages] == ["base:latest", "extras:latest"]
    assert df.stages[0].instructions[0].args.path == "/"
    assert df.global_args == (d.BuildArg("CODE_VERSION", "latest", "latest"),)


def test_redeclared_global_arg_takes_its_value() -> None:
    df = p(
        "ARG VERSION=latest\nFROM busybox:$VERSION\nARG VERSION\nRUN echo $VERSION > image_version\n"
    )
    arg, run = df.stages[0].instructions
    assert arg.args.args == (d.BuildArg("VERSION", None, "latest"),)
    assert run.build_args == (("VERSION", "latest"),)


def test_arg_scope_starts_at_its_line_and_build_args_override() -> None:
    text = "FROM busybox\nUSER ${username:-some_user}\nARG username\nUSER $username\n"
    first, _, second = steps(text, build_args={"username": "what_user"})
    assert (first.args.user, second.args.user) == ("some_user", "what_user")


def test_env_wins_over_arg() -> None:
    text = "FROM ubuntu\nARG CONT_IMG_VER\nENV CONT_IMG_VER=v1.0.0\nWORKDIR /$CONT_IMG_VER\n"
    assert steps(text, build_args={"CONT_IMG_VER": "v2.0.1"})[-1].args.path == "/v1.0.0"
    text2 = "FROM ubuntu\nARG CONT_IMG_VER\nENV CONT_IMG_VER=${CONT_IMG_VER:-v1.0.0}\n"
    assert steps(text2)[-1].args.pairs == (("CONT_IMG_VER", "v1.0.0"),)
    assert steps(text2, build_args={"CONT_IMG_VER": "v2"})[-1].args.pairs == (
        ("CONT_IMG_VER", "v2"),
    )


def test_args_and_env_inherit_from_a_parent_stage_only() -> None:
    text = "FROM busybox AS base\nARG A=1\nENV E=2\nFROM base\nWORKDIR /$A/$E\nFROM busybox\nWORKDIR /$A$E\n"
    df = p(text)
    assert df.stages[1].instructions[0].args.path == "/1/2"
    assert df.stages[2].instructions[0].args.path == "/"


def test_unused_build_args_are_noted() -> None:
    df = p("FROM busybox\nARG USED\n", build_args={"USED": "1", "NOPE": "2", "HTTP_PROXY": "x"})
    assert df.notes == (
        "[warning] one or more build-args ['NOPE'] were not consumed; declare them with ARG or drop them",
    )


def test_automatic_platform_args_in_from() -> None:
    df = p("FROM --platform=$BUILDPLATFORM busybox\nARG TARGETARCH\nWORKDIR /$TARGETARCH\n")
    assert df.stages[0].platform == HOST
    assert df.stages[0].instructions[1].args.path == "/amd64"


def test_image_env_is_used_when_given() -> None:
    env = {"busybox": {"PATH": "/usr/bin"}}
    df = p("FROM busybox\nWORKDIR $PATH/x\n", image_env=lambda ref: env[ref])
    assert df.stages[0].instructions[0].args.path == "/usr/bin/x"


# --- targets --------------------------------------------------------------------------------


def test_targets_and_needed_stages() -> None:
    text = (
        "FROM busybox AS tools\nFROM busybox AS build\nCOPY --from=tools /t /t\n"
        "FROM busybox AS docs\nFROM build AS final\nCOPY --from=1 /x /x\n"
    )
    df = p(text)
    assert d.stage_for_target(df, None) == 3
    assert d.stage_for_target(df, "BUILD") == 1
    assert d.stages_needed(df, 3) == (0, 1, 3)
    assert d.stages_needed(df, 2) == (2,)
    with pytest.raises(
        BuildError,
        match=r"target stage 'nope' could not be found .*stages: tools, build, docs, final",
    ):
        d.stage_for_target(df, "nope")


def test_copy_from_an_image() -> None:
    copy = steps("FROM busybox\nCOPY --from=nginx:latest /etc/nginx/nginx.conf /nginx.conf\n")[
        0
    ].args
    assert (copy.from_stage, copy.from_index) == ("nginx:latest", None)


# --- history --------------------------------------------------------------------------------


def test_created_by_classic_form() -> None:
    s = steps(
        'FROM busybox\nARG V=1\nRUN echo hi\nCMD ["sh"]\nWORKDIR /app\nENV A=b\nRUN ["ls", "-l"]\n'
    )
    assert d.created_by(s[1]) == "|1 V=1 /bin/sh -c echo hi"
    assert d.created_by(s[2]) == '/bin/sh -c #(nop)  CMD ["sh"]'
    assert d.created_by(s[3]) == "/bin/sh -c #(nop) WORKDIR /app"
    assert d.created_by(s[4]) == "/bin/sh -c #(nop)  ENV A=b"
    assert d.created_by(s[5]) == "|1 V=1 ls -l"
    copy = one("COPY a /b")
    assert d.created_by(copy, source_digest="abc") == "/bin/sh -c #(nop) COPY file:abc in /b "


# --- errors: message, line and column -------------------------------------------------------

ERRORS = [
    ("FROM busybox\nRUNN echo\n", "2:1: unknown instruction: RUNN (did you mean RUN?)"),
    ("FROM busybox\n  RUN\n", "2:3: RUN requires at least one argument"),
    ('FROM busybox\nENV A="oops\n', "2:7: unterminated double quote"),
    ("FROM busybox\nLABEL a='x \\\n  y\n", "2:9: unterminated single quote"),
    ("FROM busybox\nRUN <<EOF\necho\n", "2:5: unterminated heredoc <<EOF"),
    ("FROM busybox\nSHELL /bin/bash -c\n", "2:7: SHELL must be a JSON array"),
    ('FROM busybox\nSHELL ["a", 1]\n', "2:7: SHELL must be a JSON array"),
    ("# c\n\nRUN echo\n", "3:1: RUN before the first FROM"),
    ("ARG A\nENV B=1\n", "2:1: ENV before the first FROM"),
    ("FROM busybox AS a\nCOPY --from=buildr /x /x\n", "2:6: --from=buildr: no earlier stage"),
    ("FROM busybox AS a\nCOPY --from=a /x /x\n", "2:6: --from=a names the stage it is in"),
    ("FROM busybox\nCOPY --from=3 /x /x\n", "2:6: --from=3: there is no earlier stage"),
    ("FROM busybox\nCOPY --chown= a /b\n", "2:6: invalid --chown="),
    ("FROM busybox\nCOPY --chown=a:b:c a /b\n", "2:6: invalid --chown=a:b:c"),
    ("FROM busybox\nCOPY --chmod=u+x a /b\n", "2:6: invalid --chmod=u+x: use an octal mode"),
    ("FROM busybox\nCOPY --chmod=999 a /b\n", "2:6: invalid --chmod=999"),
    (
        "FROM busybox AS a\nFROM busybox AS A\n",
        "2:17: duplicate stage name 'a' (first used on line 1)",
    ),
    (
        "FROM --platform=linux/arm64 busybox\n",
        "1:6: FROM --platform=linux/arm64 does not match this host (linux/amd64)",
    ),
    ("FROM busybox\nCOPY onlyone\n", "2:6: COPY needs a source and a destination"),
    ("FROM busybox\nCOPY --frm=a b c\n", "2:6: unknown flag --frm for COPY"),
    ("FROM busybox\nENV A\n", "2:5: ENV A has no value"),
    ("FROM busybox\nENV A=1 B\n", "2:9: ENV expects key=value, found 'B'"),
    ("FROM busybox\nEXPOSE 80/tpc\n", "2:8: invalid protocol 'tpc'"),
    ("FROM busybox\nEXPOSE 99999\n", "2:8: invalid port range"),
    ("FROM busybox\nHEALTHCHECK --interval=5 CMD x\n", "2:13: --interval=5 is not a duration"),
    ("FROM busybox\nHEALTHCHECK echo\n", "2:13: HEALTHCHECK needs CMD or NONE"),
    ("FROM busybox\nONBUILD ONBUILD RUN x\n", "2:9: ONBUILD cannot trigger ONBUILD"),
    ("FROM busybox\nWORKDIR ${X:?must be set}\n", "2:9: X: must be set"),
    ("FROM busybox\nWORKDIR ${X#pre}\n", "2:12: unsupported modifier '#'"),
    ("FROM Busybox\n", "1:6: invalid reference format"),
    ("FROM a b\n", "1:6: FROM takes an image and optionally AS name"),
    ("FROM busybox AS 1st\n", "1:17: invalid stage name '1st'"),
    ("# escape=x\nFROM busybox\n", "1:10: invalid escape character 'x'"),
    ("# escape=`\n# escape=\\\nFROM a\n", "2:1: only one escape parser directive"),
    ("# just a comment\n", "no FROM instruction"),
    ("FROM busybox\nUSER a b\n", "2:6: USER takes exactly one argument"),
    ("FROM busybox\nSTOPSIGNAL SIG-KILL!\n", "2:12: invalid STOPSIGNAL"),
    ("FROM busybox\nRUN \\\n  --nope=1 x\n", "3:3: unknown flag --nope for RUN"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_errors_name_file_line_and_column(text: str, message: str) -> None:
    with pytest.raises(BuildError) as caught:
        p(text, filename="Dockerfile.dev")
    assert str(caught.value).startswith("Dockerfile.dev:" + message) or (
        "no FROM" in message and message in str(caught.value)
    ), str(caught.value)


def test_an_error_on_a_continued_line_points_at_that_line() -> None:
    with pytest.raises(BuildError, match=r"^Dockerfile:3:7: unterminated double quote"):
        p('FROM busybox\nENV A=1 \\\n    B="x\n')


# --- properties -----------------------------------------------------------------------------

_pieces = st.sampled_from(
    [
        "FROM busybox",
        "FROM a AS b",
        "RUN echo hi",
        "\\",
        "`",
        "\n",
        " ",
        "#",
        "# escape=`",
        "<<EOF",
        "EOF",
        '"',
        "'",
        "$",
        "${",
        "}",
        "[",
        "]",
        '["a"]',
        "=",
        "--from=",
        "--chown=",
        "COPY",
        "ENV",
        "ARG",
        "LABEL",
        "HEALTHCHECK",
        "CMD",
        "ONBUILD",
        "EXPOSE",
        "x",
        "1",
        ":",
        "-",
        "\t",
        "\r",
        "AS",
    ]
)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(_pieces, max_size=30).map("".join)))
def test_parser_never_crashes(text: str) -> None:
    try:
        result = p(text)
    except BuildError as err:
        assert str(err).startswith("Dockerfile:") or "no FROM" in str(err), str(err)
    else:
        assert result.stages


_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_.-", min_size=1, max_size=8).filter(
    lambda w: not w.startswith("-")
)
_value = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 _./:@$\"\\'", max_size=12)
_key = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
_path = st.lists(_word, min_size=1, max_size=3).map(lambda ws: "/" + "/".join(ws))


def _dq(text: str) -> str:
    """Quote for a Dockerfile double-quoted word: escape ", \\ and $."""
    return '"' + "".join("\\" + c if c in '"\\$' else c for c in text) + '"'


_instruction = st.one_of(
    st.lists(_word, min_size=1, max_size=4).map(
        lambda ws: ("RUN " + " ".join(ws), CommandArgs(True, (" ".join(ws),)))
    ),
    st.lists(_value, min_size=1, max_size=3).map(
        lambda vs: ("CMD " + json.dumps(vs), CommandArgs(False, tuple(vs)))
    ),
    st.lists(st.tuples(_key, _value), min_size=1, max_size=3).map(
        lambda kvs: ("ENV " + " ".join(f"{k}={_dq(v)}" for k, v in kvs), KeyValueArgs(tuple(kvs)))
    ),
    st.lists(st.tuples(_key, _value), min_size=1, max_size=3).map(
        lambda kvs: (
            "LABEL " + " \\\n  ".join(f"{_dq(k)}={_dq(v)}" for k, v in kvs),
            KeyValueArgs(tuple(kvs)),
        )
    ),
    st.lists(
        st.tuples(st.integers(1, 65535), st.sampled_from(["tcp", "udp"])), min_size=1, max_size=3
    ).map(
        lambda ps: (
            "EXPOSE " + " ".join(f"{n}/{pr}" for n, pr in ps),
            ExposeArgs(tuple(Port(n, pr) for n, pr in ps)),
        )
    ),
    _path.map(lambda path: ("WORKDIR " + path, PathArgs(path))),
    st.tuples(_word, st.none() | _word).map(
        lambda ug: ("USER " + ug[0] + (f":{ug[1]}" if ug[1] else ""), UserArgs(*ug))
    ),
    st.lists(_path, min_size=1, max_size=3).map(
        lambda ps: ("VOLUME " + json.dumps(ps), VolumeArgs(tuple(ps)))
    ),
    st.tuples(
        st.lists(_word, min_size=1, max_size=3),
        _path,
        st.none() | st.sampled_from([0o755, 0o644, 0o4755]),
        st.none() | _word,
    ).map(
        lambda c: (
            "COPY "
            + (f"--chmod={c[2]:o} " if c[2] is not None else "")
            + (f"--chown={c[3]} " if c[3] else "")
            + " ".join(c[0])
            + " "
            + c[1],
            CopyArgs(
                tuple(c[0]),
                c[1],
                None,
                None,
                Chown(c[3], None) if c[3] else None,
                c[2],
                False,
                (),
                (),
            ),
        )
    ),
    st.sampled_from(["SIGTERM", "9", "KILL"]).map(lambda s: ("STOPSIGNAL " + s, SignalArgs(s))),
    st.lists(_value, min_size=1, max_size=3).map(
        lambda vs: ("SHELL " + json.dumps(vs), ShellArgs(tuple(vs)))
    ),
)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(_instruction, min_size=1, max_size=8), st.sampled_from(["\n", "\n\n# note\n", "\n   "])
)
def test_render_then_parse_gives_the_instructions_back(items: list, separator: str) -> None:
    text = "FROM busybox" + separator + separator.join(line for line, _ in items) + "\n"
    parsed = steps(text)
    assert [i.args for i in parsed] == [args for _, args in items]
    assert [i.keyword for i in parsed] == [line.split()[0] for line, _ in items]


def test_build_error_is_a_containerlab_error() -> None:
    assert issubclass(BuildError, ContainerlabError)
