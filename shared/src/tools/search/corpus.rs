//! Where the documents come from: a folder named by `SEARCH_CORPUS`, or the
//! project's own documentation compiled in.
//!
//! A function has no web to search, and a tool that needs a search API key
//! would not work on a fresh machine. The compiled-in default makes search
//! answer something real in a container or on Lambda with no files
//! deployed; a folder lets a deployment search its own documents. Reading a
//! folder is where things go wrong (a wrong path, a file that is not text),
//! so the errors name the setting to fix.

use std::fs;
use std::path::{Path, PathBuf};

use super::index::{Document, SearchIndex};
use super::sections::has_extension;

/// The documentation searched when no corpus is configured, compiled in so
/// that a deployed binary needs no files. Sources are paths in the repository,
/// where a reader can open them.
const BUILTIN: &[(&str, &str)] = &[
    ("README.md", include_str!("../../../../README.md")),
    ("BENCHMARKS.md", include_str!("../../../../BENCHMARKS.md")),
    ("docs/guia-rapida.md", include_str!("../../../../docs/guia-rapida.md")),
    ("docs/tools.md", include_str!("../../../../docs/tools.md")),
];

/// Why a corpus folder could not be indexed. The messages name the setting,
/// since the folder comes from `SEARCH_CORPUS` and that is what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error("SEARCH_CORPUS=\"{}\": no such folder", .path.display())]
    NotFound { path: PathBuf },
    #[error("SEARCH_CORPUS=\"{}\": not a folder; expected a folder of .md or .txt files", .path.display())]
    NotAFolder { path: PathBuf },
    #[error("SEARCH_CORPUS=\"{}\": cannot read the folder: {reason}", .path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("SEARCH_CORPUS=\"{}\": no .md or .txt files found", .path.display())]
    Empty { path: PathBuf },
    #[error("SEARCH_CORPUS=\"{}\": its .md and .txt files hold no text to search", .path.display())]
    NoText { path: PathBuf },
}

impl SearchIndex {
    /// Indexes every `.md`, `.markdown` and `.txt` file under `path`. Hidden
    /// files and folders (a `.git`) are skipped, and so are links to folders,
    /// which could loop. A file that cannot be read is skipped with a warning:
    /// one bad file should not take search down. A folder with nothing to
    /// search is an error, since it is certainly a mistake in the setting.
    pub fn from_dir(path: &Path) -> Result<SearchIndex, SearchError> {
        let metadata = fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SearchError::NotFound {
                path: path.to_path_buf(),
            },
            _ => SearchError::Unreadable {
                path: path.to_path_buf(),
                reason: e.to_string(),
            },
        })?;
        if !metadata.is_dir() {
            return Err(SearchError::NotAFolder {
                path: path.to_path_buf(),
            });
        }
        let entries = fs::read_dir(path).map_err(|e| SearchError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut files = Vec::new();
        collect_files(entries, &mut files);
        if files.is_empty() {
            return Err(SearchError::Empty {
                path: path.to_path_buf(),
            });
        }
        // Sorted, so that the index, and so ties between results, do not
        // depend on the order the file system lists files in.
        files.sort();

        let mut docs = Vec::new();
        for file in files {
            let text = match fs::read(&file) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => text,
                    Err(_) => {
                        tracing::warn!(file = %file.display(), "search corpus: skipping a file that is not UTF-8");
                        continue;
                    }
                },
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "search corpus: skipping an unreadable file");
                    continue;
                }
            };
            docs.push(Document {
                source: relative_source(path, &file),
                text,
            });
        }
        if docs.is_empty() {
            return Err(SearchError::NoText {
                path: path.to_path_buf(),
            });
        }
        let index = SearchIndex::from_documents(docs);
        if index.is_empty() {
            return Err(SearchError::NoText {
                path: path.to_path_buf(),
            });
        }
        Ok(index)
    }

    /// The project's documentation, compiled into the binary.
    pub fn builtin() -> SearchIndex {
        SearchIndex::from_documents(
            BUILTIN
                .iter()
                .map(|(source, text)| Document {
                    source: (*source).to_string(),
                    text: (*text).to_string(),
                })
                .collect(),
        )
    }
}

fn collect_files(entries: fs::ReadDir, out: &mut Vec<PathBuf>) {
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                tracing::warn!(error = %e, "search corpus: skipping an unreadable folder entry");
                continue;
            }
        };
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let Ok(file_type) = entry.file_type() else {
            tracing::warn!(file = %path.display(), "search corpus: skipping an entry of unknown type");
            continue;
        };
        if file_type.is_dir() {
            match fs::read_dir(&path) {
                Ok(nested) => collect_files(nested, out),
                Err(e) => {
                    tracing::warn!(folder = %path.display(), error = %e, "search corpus: skipping an unreadable folder");
                }
            }
            continue;
        }
        // A link to a file counts as the file (fs::metadata follows it).
        let is_file = file_type.is_file() || (file_type.is_symlink() && fs::metadata(&path).is_ok_and(|m| m.is_file()));
        if is_file && has_extension(&path.to_string_lossy(), &["md", "markdown", "txt"]) {
            out.push(path);
        }
    }
}

/// `file`'s path under `root`, with `/` separators whatever the platform, as
/// it appears in a link.
fn relative_source(root: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(root).unwrap_or(file);
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::search::fixtures::sources;

    #[test]
    fn from_dir_indexes_markdown_and_text_recursively() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let root = dir.path();
        fs::write(
            root.join("guide.md"),
            "# Guide\n\n## Setup\n\nInstall the kiwi package.\n",
        )
        .expect("write guide.md");
        fs::write(root.join("notes.txt"), "First paragraph about mangos.\n\nSecond one.").expect("write notes.txt");
        fs::write(root.join("image.png"), "papaya in a file that is not text").expect("write image.png");
        fs::write(root.join("latin1.md"), b"caf\xe9 guava").expect("write latin1.md");
        fs::create_dir_all(root.join("nested/deeper")).expect("create nested folders");
        fs::write(root.join("nested/deeper/more.markdown"), "# More\n\nBananas and kiwi.").expect("write more");
        fs::create_dir(root.join(".hidden")).expect("create .hidden");
        fs::write(root.join(".hidden/secret.md"), "# Secret\n\nPapaya.").expect("write secret");

        let index = SearchIndex::from_dir(root).expect("the folder is indexed");
        assert_eq!(index.len(), 3);
        assert_eq!(sources(&index.search("mango", 5)), ["notes.txt"]);
        assert_eq!(index.search("mango", 5)[0].title, "notes.txt");
        let mut kiwi = sources(&index.search("kiwi", 5))
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        kiwi.sort();
        assert_eq!(kiwi, ["guide.md#setup", "nested/deeper/more.markdown#more"]);
        assert!(index.search("papaya", 5).is_empty());
        assert!(index.search("guava", 5).is_empty());
    }

    #[test]
    fn from_dir_names_the_folder_it_cannot_use() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let missing = dir.path().join("no-such-corpus");
        let err = SearchIndex::from_dir(&missing).expect_err("a missing folder is an error");
        assert!(matches!(err, SearchError::NotFound { .. }));
        let message = err.to_string();
        assert!(
            message.contains("SEARCH_CORPUS=") && message.contains("no-such-corpus"),
            "{message}"
        );

        fs::write(dir.path().join("picture.png"), "not text").expect("write picture.png");
        let err = SearchIndex::from_dir(dir.path()).expect_err("a folder without documents is an error");
        assert!(err.to_string().ends_with("no .md or .txt files found"), "{err}");
        assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");

        let file = dir.path().join("picture.png");
        let err = SearchIndex::from_dir(&file).expect_err("a file is not a folder");
        assert!(matches!(err, SearchError::NotAFolder { .. }), "{err}");
    }

    #[test]
    fn builtin_index_is_not_empty() {
        let index = SearchIndex::builtin();
        assert!(!index.is_empty());
        let (units, terms) = index.index_stats();
        assert_eq!(units, index.len());
        assert!(terms > 100, "{terms} terms");
    }

    #[test]
    fn builtin_finds_matematicas_in_the_spanish_guide() {
        let results = SearchIndex::builtin().search("matemáticas", 5);
        assert!(!results.is_empty());
        assert!(
            results.iter().any(
                |r| r.snippet.to_lowercase().contains("matemáticas") && r.source.starts_with("docs/guia-rapida.md")
            ),
            "{results:#?}"
        );
    }

    #[test]
    fn builtin_finds_the_readme_and_the_benchmarks() {
        let index = SearchIndex::builtin();
        let settings = index.search("SQLITE_PATH", 5);
        assert!(
            settings.iter().any(|r| r.source == "README.md#settings"),
            "{settings:#?}"
        );
        let cold = index.search("cold start", 5);
        assert!(cold.iter().any(|r| r.source.starts_with("BENCHMARKS.md")), "{cold:#?}");
        assert!(cold[0].snippet.to_lowercase().contains("cold"), "{cold:#?}");
    }
}
