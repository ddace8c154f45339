//! Settings from a `.env` file, under the real environment.
//!
//! The file is found once at start-up: `ENV_FILE` names it (`off` reads
//! none), else the first `.env` in the working directory or one of its
//! parents. On Cloud Run and Lambda (`K_SERVICE`, `AWS_LAMBDA_RUNTIME_API`)
//! nothing is searched for: their settings are the service's, and a `.env`
//! copied into an image by mistake (a developer's keys, `STORE=sqlite`)
//! would change a deployment silently. `ENV_FILE` still reads one there,
//! because asking for it is not a mistake.
//!
//! The file's values are merged into the settings' lookup, not into the
//! process environment: `std::env::set_var` is `unsafe` in edition 2024
//! (another thread may be reading the environment, and the tokio runtime's
//! threads exist before `main`'s first line), and the workspace forbids
//! `unsafe`. So what reads the environment itself does not see them, and
//! the few settings libraries used to read for us are read here and handed
//! over (`FIRESTORE_EMULATOR_HOST`, `RUST_LOG`). Keeping the merge here
//! also keeps the provenance: a bad value says it came from the file.
//!
//! The parser is this file's own rather than the `dotenvy` crate's: its
//! errors name the line, and it expands nothing (`dotenvy` substitutes
//! `$VAR` from the process environment, which would make a value depend on
//! where it is read).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The setting that names the file, or turns the search off.
pub const ENV_FILE: &str = "ENV_FILE";

/// The file searched for in the working directory and its parents.
const FILE_NAME: &str = ".env";

/// A `.env` file that could not be used: one line for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct DotEnvError {
    pub path: PathBuf,
    /// The line (from 1) the problem is on; `None` when the file as a whole
    /// could not be read.
    pub line: Option<usize>,
    pub message: String,
}

/// The variables a `.env` file sets, in its order (a name set twice keeps
/// its last value), or the first line that is not `KEY=VALUE`.
///
/// Understood: blank lines, `#` comments (whole lines, and after a value
/// following a space), `export KEY=VALUE`, spaces around `=`, unquoted values
/// (trimmed), `'single'` quotes (taken as written, over several lines too)
/// and `"double"` quotes (over several lines, with `\n`, `\r`, `\t`, `\"`,
/// `\\` and `\$` escapes; another backslash is kept). Nothing is expanded.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut vars: Vec<(String, String)> = Vec::new();
    // A byte order mark, as some Windows editors write, is not part of the first name.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    while let Some((number, line)) = lines.next() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
        let Some((key, rest)) = line.split_once('=') else {
            return Err((number, "expected KEY=VALUE".to_string()));
        };
        let key = key.trim_end();
        if !is_name(key) {
            // The line is not echoed: it may hold a secret.
            return Err((
                number,
                "the name before = is not a variable name (letters, digits and _, not starting with a digit)"
                    .to_string(),
            ));
        }
        let rest = rest.trim_start();
        let value = match rest.chars().next() {
            Some(quote @ ('\'' | '"')) => quoted(quote, &rest[1..], number, &mut lines)?,
            _ => unquoted(rest),
        };
        vars.retain(|(k, _)| k != key);
        vars.push((key.to_string(), value));
    }
    Ok(vars)
}

fn is_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A value up to a ` #` comment, trimmed.
fn unquoted(rest: &str) -> String {
    let end = rest
        .char_indices()
        .find(|&(i, c)| c == '#' && rest[..i].ends_with([' ', '\t']))
        .map_or(rest.len(), |(i, _)| i);
    rest[..end].trim().to_string()
}

/// A quoted value starting after its opening quote on line `number`,
/// continued on the following lines until the closing quote; after it, only
/// spaces and a comment.
fn quoted<'a>(
    quote: char,
    mut rest: &'a str,
    number: usize,
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
) -> Result<String, (usize, String)> {
    let mut value = String::new();
    let mut at = number;
    loop {
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == quote {
                let after = rest[i + 1..].trim_start();
                if !(after.is_empty() || after.starts_with('#')) {
                    return Err((at, format!("unexpected text after the closing {quote}")));
                }
                return Ok(value);
            }
            if c == '\\' && quote == '"' {
                match chars.next().map(|(_, e)| e) {
                    Some('n') => value.push('\n'),
                    Some('r') => value.push('\r'),
                    Some('t') => value.push('\t'),
                    Some(e @ ('"' | '\\' | '$')) => value.push(e),
                    Some(e) => {
                        value.push('\\');
                        value.push(e);
                    }
                    None => value.push('\\'),
                }
                continue;
            }
            value.push(c);
        }
        let Some((next, line)) = lines.next() else {
            return Err((number, format!("the {quote} opened here is never closed")));
        };
        value.push('\n');
        at = next;
        rest = line;
    }
}

/// The `.env` file to read: `ENV_FILE`'s, none when it is `off` or on a
/// platform (see the module), else the first `.env` from `dir` up.
pub fn locate(real: impl Fn(&str) -> Option<String>, dir: &Path) -> Option<PathBuf> {
    match real(ENV_FILE).map(|v| v.trim().to_string()).filter(|v| !v.is_empty()) {
        Some(off) if off.eq_ignore_ascii_case("off") => None,
        Some(path) => Some(dir.join(path)),
        None if real("K_SERVICE").is_some() || real("AWS_LAMBDA_RUNTIME_API").is_some() => None,
        None => dir
            .ancestors()
            .map(|d| d.join(FILE_NAME))
            .find(|candidate| candidate.is_file()),
    }
}

/// The variables a `.env` file supplies: those the real environment does
/// not set, even to an empty value (the real environment always wins).
#[derive(Clone, Default)]
pub struct DotEnv {
    path: Option<PathBuf>,
    vars: HashMap<String, String>,
}

/// Names only: the values may be secrets.
impl fmt::Debug for DotEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DotEnv")
            .field("path", &self.path)
            .field("names", &self.names())
            .finish()
    }
}

impl DotEnv {
    /// The file's variables the real environment (`is_set`) lacks.
    pub fn from_text(path: &Path, text: &str, is_set: impl Fn(&str) -> bool) -> Result<DotEnv, DotEnvError> {
        let vars = parse(text).map_err(|(line, message)| DotEnvError {
            path: path.to_path_buf(),
            line: Some(line),
            message,
        })?;
        Ok(DotEnv {
            path: Some(path.to_path_buf()),
            vars: vars.into_iter().filter(|(k, _)| !is_set(k)).collect(),
        })
    }

    /// Finds and reads the file for this process (see [`locate`]).
    fn load() -> Result<DotEnv, DotEnvError> {
        let real = |name: &str| std::env::var(name).ok();
        let dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let Some(path) = locate(real, &dir) else {
            return Ok(DotEnv::default());
        };
        let text = std::fs::read_to_string(&path).map_err(|err| DotEnvError {
            path: path.clone(),
            line: None,
            message: format!("cannot read it: {err}"),
        })?;
        DotEnv::from_text(&path, &text, |name| std::env::var_os(name).is_some())
    }

    /// A value the file supplies (the real environment has none).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// The file read, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The names the file supplied, sorted: for the start-up line, which
    /// shows no value.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.vars.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// This process's `.env`, read once; an unusable file is kept as its error
/// for [`process_or_exit`] to report.
static PROCESS: OnceLock<Result<DotEnv, DotEnvError>> = OnceLock::new();

fn process() -> &'static Result<DotEnv, DotEnvError> {
    PROCESS.get_or_init(DotEnv::load)
}

/// For tests in process: no `.env` is read, so that one in a parent of the
/// repository (where tests run) does not leak into every test. Wins over the
/// search if called first, for the whole test process.
#[cfg(any(test, feature = "testing"))]
pub fn read_no_file() {
    let _ = PROCESS.set(Ok(DotEnv::default()));
}

/// This process's `.env`, or exits with status 2 and one line naming the
/// file and line, as a bad setting does.
pub fn process_or_exit() -> &'static DotEnv {
    match process() {
        Ok(dotenv) => dotenv,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::exit(2);
        }
    }
}

/// A variable of the real environment, else of this process's `.env`: how
/// every setting is looked up.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().or_else(|| match process() {
        Ok(dotenv) => dotenv.get(name).map(str::to_string),
        Err(_) => None,
    })
}

/// Where `name`'s value comes from, when it is the `.env` file: for an
/// error about it.
pub fn source(name: &str) -> Option<&'static Path> {
    match process() {
        Ok(dotenv) if dotenv.get(name).is_some() => dotenv.path(),
        _ => None,
    }
}

impl fmt::Display for DotEnv {
    /// The start-up line: the file and the names it supplied, no value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            None => f.write_str("no .env file read"),
            Some(path) if self.vars.is_empty() => write!(
                f,
                "read {} (every variable in it is set in the environment, which wins)",
                path.display()
            ),
            Some(path) => write!(
                f,
                "read {}: {} setting(s) from it: {}",
                path.display(),
                self.vars.len(),
                self.names().join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap_or_else(|(line, err)| panic!("line {line}: {err}"))
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_common_syntax_is_understood() {
        let text = "\
# a comment
   
PORT=9000
export RUST_LOG = debug
PLAIN=  spaced value   # a comment
HASH=a#b
EMPTY=
SINGLE='a \\n $HOME # not a comment'
DOUBLE=\"line\\none\\t\\\"q\\\" \\\\ \\$HOME \\x\" # comment
MULTI=\"first
second\"
KEY='-----BEGIN-----
abc
-----END-----'
PORT=9001
";
        assert_eq!(
            parsed(text),
            pairs(&[
                ("RUST_LOG", "debug"),
                ("PLAIN", "spaced value"),
                ("HASH", "a#b"),
                ("EMPTY", ""),
                ("SINGLE", "a \\n $HOME # not a comment"),
                ("DOUBLE", "line\none\t\"q\" \\ $HOME \\x"),
                ("MULTI", "first\nsecond"),
                ("KEY", "-----BEGIN-----\nabc\n-----END-----"),
                ("PORT", "9001"),
            ])
        );
    }

    #[test]
    fn a_byte_order_mark_and_crlf_line_ends_are_not_part_of_the_settings() {
        assert_eq!(parsed("\u{feff}A=1\r\nB='2'\r\n"), pairs(&[("A", "1"), ("B", "2")]));
    }

    #[test]
    fn a_malformed_line_is_named() {
        for (text, line, says) in [
            ("A=1\nnot a setting\n", 2, "expected KEY=VALUE"),
            ("A=1\n\n1X=2\n", 3, "not a variable name"),
            ("A-B=2\n", 1, "not a variable name"),
            ("A=\"open\nstill open\n", 1, "never closed"),
            ("A='x' y\n", 1, "after the closing"),
            ("A=\"x\nx\" y\n", 2, "after the closing"),
        ] {
            let (at, message) = parse(text).expect_err(text);
            assert_eq!(at, line, "{text:?}: {message}");
            assert!(message.contains(says), "{text:?}: {message}");
        }
    }

    #[test]
    fn the_real_environment_wins_even_when_empty() {
        let path = Path::new("/somewhere/.env");
        let dotenv = DotEnv::from_text(path, "PORT=9000\nSQLITE_PATH=/tmp/x.db\nGEMINI_API_KEY=k\n", |name| {
            matches!(name, "PORT" | "GEMINI_API_KEY")
        })
        .expect("parses");
        assert_eq!(dotenv.get("SQLITE_PATH"), Some("/tmp/x.db"));
        assert_eq!(dotenv.get("PORT"), None, "set in the environment");
        assert_eq!(
            dotenv.get("GEMINI_API_KEY"),
            None,
            "set, even if empty, in the environment"
        );
        assert_eq!(dotenv.names(), ["SQLITE_PATH"]);
        let line = dotenv.to_string();
        assert!(
            line.contains("/somewhere/.env") && line.contains("SQLITE_PATH"),
            "{line}"
        );

        let err = DotEnv::from_text(path, "A=1\nB\n", |_| false).expect_err("line 2");
        assert_eq!(err.to_string(), "/somewhere/.env line 2: expected KEY=VALUE");
    }

    #[test]
    fn the_start_up_line_names_settings_but_shows_no_value() {
        let dotenv = DotEnv::from_text(
            Path::new(".env"),
            "WEBHOOK_SECRET=s3cret-value\nAPI_KEYS=app:k3y\n",
            |_| false,
        )
        .expect("parses");
        let line = dotenv.to_string();
        assert!(line.contains("API_KEYS, WEBHOOK_SECRET"), "{line}");
        assert!(!line.contains("s3cret") && !line.contains("k3y"), "{line}");
        let debug = format!("{dotenv:?}");
        assert!(debug.contains("WEBHOOK_SECRET") && !debug.contains("s3cret"), "{debug}");
        let err = parse("API_KEY='s3cret'tail\n").expect_err("text after the quote");
        assert!(!err.1.contains("tail"), "{err:?}");
        let err = parse("my s3cret=1\n").expect_err("not a name");
        assert!(!err.1.contains("s3cret"), "{err:?}");
    }

    #[test]
    fn the_file_is_searched_from_the_directory_up_unless_told_otherwise() {
        let root = tempfile::tempdir().expect("tempdir");
        let nested = root.path().join("a").join("b");
        std::fs::create_dir_all(&nested).expect("mkdir");
        let none = |_: &str| None::<String>;
        // The tempdir's own parents may hold a .env: only look below it.
        let outer = root.path().join(".env");
        std::fs::write(&outer, "A=outer\n").expect("write");
        assert_eq!(locate(none, &nested), Some(outer.clone()), "a parent's");
        let inner = root.path().join("a").join(".env");
        std::fs::write(&inner, "A=inner\n").expect("write");
        assert_eq!(locate(none, &nested), Some(inner.clone()), "the nearest wins");

        let with = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        assert_eq!(locate(with(&[("ENV_FILE", "off")]), &nested), None);
        assert_eq!(locate(with(&[("ENV_FILE", "OFF")]), &nested), None);
        assert_eq!(
            locate(with(&[("ENV_FILE", "conf/dev.env")]), &nested),
            Some(nested.join("conf/dev.env")),
            "relative to the working directory, found or not"
        );
        assert_eq!(
            locate(with(&[("ENV_FILE", "/etc/agent.env")]), &nested),
            Some(PathBuf::from("/etc/agent.env"))
        );
        assert_eq!(locate(with(&[("K_SERVICE", "chat")]), &nested), None, "Cloud Run");
        assert_eq!(
            locate(with(&[("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")]), &nested),
            None,
            "Lambda"
        );
        assert_eq!(
            locate(with(&[("K_SERVICE", "chat"), ("ENV_FILE", "/etc/agent.env")]), &nested),
            Some(PathBuf::from("/etc/agent.env")),
            "asked for, on a platform too"
        );
    }
}
