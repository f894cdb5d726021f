//! The README's commands, run top to bottom as a newcomer would, against a fresh data directory.
//!
//! Every ` ```sh ` block of `README.md` is run, in order, by one bash script, unless [`NOT_RUN`]
//! lists it (its exact text) with the reason it cannot run here. Any other fenced block must be
//! `text`, `json` or `toml`: a block in another language or in none fails the test, so a command
//! cannot hide from it. To add a command to the README, put it in a ` ```sh ` block: it is run
//! as it is, with these translations:
//!
//! - `cargo run --release [-q] [--]` is the `cellule` binary this test was built with;
//!   `[VAR=value …] cargo run --release` alone or with `serve` starts the server in the
//!   background (it must fit on one line), waits until `/readyz` answers, and stops it at the
//!   end; any other `cargo` command is refused (list its block in [`NOT_RUN`]);
//! - `127.0.0.1:8080` is a free loopback port; `CELLULE_BIND` names it too, and the script runs
//!   in an empty temporary directory with `CELLULE_DATA_DIR` pointing at its `cellule-data/`
//!   (the default data directory), so every command meets the same fresh state;
//! - the `export` lines printed by `demo` are pasted into the shell, as the README asks;
//! - `curl` fails on an HTTP error status (`--fail-with-body`), so a refused request fails the
//!   test, and every `curl` of the README must have run by the end.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cellule");

/// Blocks not run here, by their exact text, with the reason.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "cargo run --release",
        "serves on the default address until stopped; the demo block starts the same binary \
         with `serve`, and the rest of the README runs against it",
    ),
    (
        "cargo test",
        "runs the test suite this test belongs to; CI runs it (`.ci/run`)",
    ),
];

/// The binary's subcommands; a command line naming none of them serves (the default command).
const SUBCOMMANDS: &[&str] = &[
    "serve",
    "migrate",
    "cellule",
    "member",
    "keys",
    "retention",
    "audit",
    "routing",
    "demo",
    "token",
    "help",
];

/// Fenced blocks that hold no command.
const NOT_COMMANDS: &[&str] = &["text", "json", "toml"];

/// How long the whole README may take.
const DEADLINE: Duration = Duration::from_secs(180);

struct Block {
    lang: String,
    /// 1-based line of the opening fence.
    line: usize,
    text: String,
}

fn fenced_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String, usize, Vec<&str>)> = None;
    for (i, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        let fence = ["```", "~~~"].into_iter().find(|f| trimmed.starts_with(f));
        match (&mut open, fence) {
            (None, Some(f)) => {
                let lang = trimmed.trim_start_matches(&f[..1]).trim();
                let lang = lang.split_whitespace().next().unwrap_or("").to_owned();
                open = Some((f.to_owned(), lang, i + 1, Vec::new()));
            }
            (Some((f, _, _, _)), Some(g)) if f.as_str() == g && trimmed.trim_end() == g => {
                if let Some((_, lang, line, lines)) = open.take() {
                    blocks.push(Block {
                        lang,
                        line,
                        text: lines.join("\n"),
                    });
                }
            }
            (Some((_, _, _, lines)), _) => lines.push(line),
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "README.md: a fenced block is never closed");
    blocks
}

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Leading `NAME=value` assignments of a command line.
fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    })
}

/// One README line as the script runs it.
fn translate(line: &str, port: u16, at: usize) -> Result<String, String> {
    let mut out = line.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    for form in [
        "cargo run --release -q -- ",
        "cargo run --release -- ",
        "cargo run --release -q",
        "cargo run --release",
    ] {
        out = out.replace(form, "\"$CELLULE\" ");
    }
    if out
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| w == "cargo")
    {
        return Err(format!(
            "README.md line {at}: `{line}` is a cargo command this test cannot run; list its \
             block in NOT_RUN with a reason"
        ));
    }
    let command: Vec<&str> = words(&out)
        .into_iter()
        .skip_while(|w| is_assignment(w))
        .collect();
    if command.first() != Some(&"\"$CELLULE\"") {
        return Ok(out);
    }
    let subcommand = command[1..].iter().find(|a| SUBCOMMANDS.contains(a));
    let one_line = |what: &str| {
        if out.trim_end().ends_with('\\') {
            Err(format!(
                "README.md line {at}: write the {what} command on one line"
            ))
        } else {
            Ok(())
        }
    };
    match subcommand {
        None | Some(&"serve") => {
            one_line("server")?;
            Ok(format!(
                "{} >>\"$WORK/server.log\" 2>&1 &\nserver_started $!",
                out.trim_end()
            ))
        }
        Some(&"demo") => {
            one_line("demo")?;
            Ok(format!(
                "{} | tee \"$WORK/demo.out\"\npaste_exports \"$WORK/demo.out\"",
                out.trim_end()
            ))
        }
        Some(_) => Ok(out),
    }
}

const PRELUDE: &str = r#"set -Eeuo pipefail
README_BLOCK=0
trap 'echo >&2; echo "FAILED: the block at README.md line $README_BLOCK: $BASH_COMMAND" >&2' ERR
SERVERS=()
stop_servers() {
  for pid in "${SERVERS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
}
trap stop_servers EXIT
curl() {
  echo >>"$WORK/curl.count"
  local rc=0
  command curl --fail-with-body --max-time 60 "$@" || rc=$?
  if [ "$rc" -ne 0 ]; then echo >&2; echo "curl $* failed with exit code $rc" >&2; fi
  return "$rc"
}
server_started() {
  SERVERS+=("$1")
  echo "$1" >>"$WORK/server.pids"
  for _ in $(seq 1 300); do
    if command curl -sf -o /dev/null "http://127.0.0.1:$PORT/readyz"; then return 0; fi
    if ! kill -0 "$1" 2>/dev/null; then
      echo "the server exited:" >&2; cat "$WORK/server.log" >&2; return 1
    fi
    sleep 0.1
  done
  echo "the server did not become ready:" >&2; cat "$WORK/server.log" >&2; return 1
}
paste_exports() {
  eval "$(grep '^export ' "$1")"
}
"#;

fn kill_servers(work: &Path) {
    let pids = std::fs::read_to_string(work.join("server.pids")).unwrap_or_default();
    for pid in pids.lines().filter(|p| !p.trim().is_empty()) {
        let _ = Command::new("kill")
            .arg(pid.trim())
            .stderr(Stdio::null())
            .status();
    }
}

/// The end of a long text, for failure messages.
fn tail(text: &str, chars: usize) -> &str {
    let start = text.char_indices().rev().nth(chars).map_or(0, |(i, _)| i);
    &text[start..]
}

#[test]
fn every_readme_command_runs_on_a_fresh_data_directory() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let blocks = fenced_blocks(&readme);

    for (text, reason) in NOT_RUN {
        assert!(!reason.is_empty());
        assert!(
            blocks
                .iter()
                .any(|b| b.lang == "sh" && b.text.trim() == *text),
            "NOT_RUN lists `{text}`, which is no longer a block of README.md: remove it"
        );
    }
    let listed = |b: &Block| NOT_RUN.iter().any(|(text, _)| b.text.trim() == *text);

    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        listener.local_addr().expect("local addr").port()
    };
    let mut script = format!("PORT={port}\n{PRELUDE}");
    let mut curls = 0;
    let mut run = 0;
    for b in &blocks {
        if NOT_COMMANDS.contains(&b.lang.as_str()) {
            continue;
        }
        assert!(
            b.lang == "sh",
            "README.md line {}: a fenced block in `{}`: use `sh` for commands (run by this test) \
             or one of {NOT_COMMANDS:?} for anything else",
            b.line,
            b.lang
        );
        if listed(b) {
            continue;
        }
        run += 1;
        script.push_str(&format!("\nREADME_BLOCK={}\n", b.line));
        for (i, line) in b.text.lines().enumerate() {
            let translated =
                translate(line, port, b.line + 1 + i).unwrap_or_else(|e| panic!("{e}"));
            script.push_str(&translated);
            script.push('\n');
        }
        curls += b
            .text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| *w == "curl")
            .count();
    }
    assert!(run > 0, "no block of README.md was run");

    let work = tempfile::tempdir().expect("tempdir");
    let script_path = work.path().join("readme.sh");
    std::fs::write(&script_path, &script).expect("write the script");
    let out_path = work.path().join("transcript.txt");
    let out = std::fs::File::create(&out_path).expect("transcript");
    let mut child = Command::new("bash")
        .arg(&script_path)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", work.path())
        .env("CELLULE", BIN)
        .env("WORK", work.path())
        .env("CELLULE_BIND", format!("127.0.0.1:{port}"))
        .env("CELLULE_DATA_DIR", work.path().join("cellule-data"))
        .current_dir(work.path())
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("transcript"))
        .stderr(out)
        .spawn()
        .expect("run bash");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for bash") {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    kill_servers(work.path());
    let transcript = std::fs::read_to_string(&out_path).unwrap_or_default();
    let server_log = std::fs::read_to_string(work.path().join("server.log")).unwrap_or_default();
    let context = format!(
        "script:\n{script}\n--- output (end):\n{}\n--- server log (end):\n{}",
        tail(&transcript, 6000),
        tail(&server_log, 3000)
    );
    // Shown with `cargo test --test readme -- --nocapture`.
    println!("{context}");
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("a README command failed ({s}).\n{context}"),
        None => panic!("the README's commands took longer than {DEADLINE:?}.\n{context}"),
    }
    let ran = std::fs::read_to_string(work.path().join("curl.count"))
        .map(|c| c.lines().count())
        .unwrap_or(0);
    assert_eq!(
        ran, curls,
        "the README has {curls} curl commands and {ran} ran.\n{context}"
    );
}

#[test]
fn the_translation_runs_the_built_binary_and_refuses_other_cargo_commands() {
    let t = |line: &str| translate(line, 4321, 1);
    assert_eq!(
        t("X=$(cargo run --release -q -- token a)").as_deref(),
        Ok("X=$(\"$CELLULE\" token a)")
    );
    assert_eq!(
        t("curl -s http://127.0.0.1:8080/v1/me").as_deref(),
        Ok("curl -s http://127.0.0.1:4321/v1/me")
    );
    let server = t("A=b cargo run --release -- serve --bind 127.0.0.1:8080").expect("server");
    assert!(
        server.starts_with("A=b \"$CELLULE\" serve --bind 127.0.0.1:4321 >>")
            && server.ends_with("server_started $!"),
        "{server}"
    );
    assert!(
        t("cargo run --release")
            .expect("server")
            .contains("server_started")
    );
    assert!(
        t("cargo run --release -- --data-dir /srv/x")
            .expect("server")
            .contains("server_started")
    );
    assert!(
        !t("cargo run --release -- --data-dir /srv/x member list demo")
            .expect("member")
            .contains("server_started")
    );
    assert!(
        t("cargo run --release -- demo")
            .expect("demo")
            .contains("paste_exports")
    );
    assert!(t("cargo test").is_err());
    assert!(t("cargo bench --bench load").is_err());
    assert!(t("cargo run --release -- serve \\").is_err());
    let blocks = fenced_blocks("a\n```sh\nx\n  y\n```\n\n  ```text\nz\n  ```\n```\nw\n```\n");
    let found: Vec<(&str, &str)> = blocks
        .iter()
        .map(|b| (b.lang.as_str(), b.text.as_str()))
        .collect();
    assert_eq!(found, [("sh", "x\n  y"), ("text", "z"), ("", "w")]);
}
