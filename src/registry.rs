//! The model registry: versioned immutable artifacts, aliases with history, atomic writes, verification.
//!
//! # Layout
//!
//! ```text
//! <root>/<name>/
//!   .lock                 exclusive lock (fs2) held while allocating a version or changing aliases
//!   aliases.json          {"production": "v3", "staging": "v4", "history": [...]}
//!   v3/
//!     manifest.json       the trainer's manifest plus name, version, created_at,
//!                         crate_version and "files": {file name: sha256 hex}
//!     model.bin, report.html, metrics.json, ...
//!   .tmp-<uuid>/          a version being written; never listed, removed when stale
//! ```
//!
//! The registry does not know what a model is: the trainer hands it files and a
//! [`Manifest`]. The registry owns version numbers, checksums, aliases, atomicity and
//! verification. A file that exists but cannot be trusted is [`Error::Corrupt`]; a model
//! or alias that does not exist is [`Error::ModelNotFound`] / [`Error::AliasMissing`].
//!
//! # Atomicity
//!
//! A version is written into `.tmp-<uuid>/` (every file fsynced), then, under the lock,
//! its number is allocated, `manifest.json` is written last, the directory is renamed to
//! `vN` and the parent directory is fsynced. `aliases.json` is replaced by
//! [`crate::fsutil::write_atomic`] under the same lock. A crash at any point leaves either
//! no `vN` at all or a complete one; versions are never modified after the rename.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::fsutil::{sync_dir, write_new_synced as write_synced, TMP_PREFIX};
use crate::manifest::Manifest;
use crate::{Error, Result};

/// The models directory when none is configured.
pub const DEFAULT_MODELS_DIR: &str = "models";
/// The model name when none is configured.
pub const DEFAULT_NAME: &str = "churn";
/// The alias served by default; the only one [`Registry::rollback`] moves.
pub const PRODUCTION: &str = "production";
/// The alias a new, non-promoted version receives.
pub const STAGING: &str = "staging";
/// The manifest written into every version directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The alias file of a model name.
pub const ALIASES_FILE: &str = "aliases.json";
const LOCK_FILE: &str = ".lock";
/// Temporary entries older than this are removed by the next publish.
const STALE_AFTER: Duration = Duration::from_secs(3600);
/// The key of `aliases.json` that holds the history rather than an alias.
const HISTORY_KEY: &str = "history";

/// A directory of models: `<root>/<name>/vN/...`.
#[derive(Debug, Clone)]
pub struct Registry {
    root: PathBuf,
}

/// Which version of a model to use: an alias (`production`, `staging`) or a number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selector {
    Alias(String),
    Version(u32),
}

impl FromStr for Selector {
    type Err = Error;

    /// `"v3"`, `"V3"` and `"3"` are versions (from 1); any valid name is an alias.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let digits = s
            .strip_prefix('v')
            .or_else(|| s.strip_prefix('V'))
            .unwrap_or(s);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return match digits.parse::<u32>() {
                Ok(0) => Err(Error::Artifact(format!(
                    "invalid version `{s}`: versions start at v1"
                ))),
                Ok(n) => Ok(Selector::Version(n)),
                Err(_) => Err(Error::Artifact(format!("invalid version `{s}`: too large"))),
            };
        }
        validate_alias(s)?;
        Ok(Selector::Alias(s.to_string()))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Alias(a) => f.write_str(a),
            Selector::Version(v) => write!(f, "v{v}"),
        }
    }
}

/// What [`Registry::publish`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub name: String,
    pub version: u32,
    /// The version directory, `<root>/<name>/vN`.
    pub dir: PathBuf,
    /// The aliases now pointing at this version (`production` or `staging`).
    pub aliases_set: Vec<String>,
}

/// A version read by [`Registry::load`], every file checked against its manifest checksum.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedVersion {
    pub name: String,
    pub version: u32,
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// Every file listed in the manifest, by file name (`manifest.json` excluded).
    pub files: BTreeMap<String, Vec<u8>>,
}

/// One version as listed by [`Registry::versions`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VersionInfo {
    pub version: u32,
    pub created_at: String,
    pub manifest: Manifest,
    /// The aliases pointing at this version, sorted.
    pub aliases: Vec<String>,
}

/// Why an alias moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasAction {
    /// Set by [`Registry::publish`] for the new version.
    Publish,
    /// Set by [`Registry::promote`].
    Promote,
    /// Set by [`Registry::rollback`]; undoes the latest change not already undone.
    Rollback,
}

impl AliasAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AliasAction::Publish => "publish",
            AliasAction::Promote => "promote",
            AliasAction::Rollback => "rollback",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "publish" => Some(AliasAction::Publish),
            "promote" => Some(AliasAction::Promote),
            "rollback" => Some(AliasAction::Rollback),
            _ => None,
        }
    }
}

impl fmt::Display for AliasAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change of an alias, oldest first in [`Aliases::history`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasEvent {
    pub alias: String,
    /// The previous target, `None` when the alias did not exist.
    pub from: Option<u32>,
    pub to: u32,
    /// RFC 3339 UTC.
    pub at: String,
    pub action: AliasAction,
}

/// The content of `aliases.json`: where each alias points now, and how it got there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aliases {
    pub current: BTreeMap<String, u32>,
    pub history: Vec<AliasEvent>,
}

impl Aliases {
    /// The version an alias points at.
    pub fn get(&self, alias: &str) -> Option<u32> {
        self.current.get(alias).copied()
    }

    /// The aliases pointing at `version`, sorted.
    pub fn of_version(&self, version: u32) -> Vec<String> {
        self.current
            .iter()
            .filter(|(_, v)| **v == version)
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// `{"production": "v3", "staging": "v4", "history": [...]}`.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        for (alias, v) in &self.current {
            obj.insert(alias.clone(), Value::String(version_dir(*v)));
        }
        let history = self
            .history
            .iter()
            .map(|e| {
                json!({
                    "alias": e.alias,
                    "from": e.from.map(version_dir),
                    "to": version_dir(e.to),
                    "at": e.at,
                    "action": e.action.as_str(),
                })
            })
            .collect();
        obj.insert(HISTORY_KEY.to_string(), Value::Array(history));
        Value::Object(obj)
    }

    /// Parses `aliases.json`; `file` names it in errors. A missing `history` is empty.
    pub fn from_json(value: &Value, file: &Path) -> Result<Self> {
        let bad = |what: String| Error::corrupt(file, "aliases file", what);
        let obj = value
            .as_object()
            .ok_or_else(|| bad("expected a JSON object".into()))?;
        let mut out = Aliases::default();
        for (key, val) in obj {
            if key == HISTORY_KEY {
                continue;
            }
            let v = val.as_str().and_then(parse_version_dir).ok_or_else(|| {
                bad(format!(
                    "alias `{key}` must be a version like \"v3\", found {val}"
                ))
            })?;
            out.current.insert(key.clone(), v);
        }
        if let Some(history) = obj.get(HISTORY_KEY) {
            let items = history
                .as_array()
                .ok_or_else(|| bad("`history` must be an array".into()))?;
            for (i, item) in items.iter().enumerate() {
                let event = parse_event(item).ok_or_else(|| {
                    bad(format!(
                        "history entry {i} is malformed (expected alias, from, to, at, action): {item}"
                    ))
                })?;
                out.history.push(event);
            }
        }
        Ok(out)
    }

    /// Sets `alias` to `to` and records the change; returns the previous target.
    fn set(&mut self, alias: &str, to: u32, action: AliasAction) -> Option<u32> {
        let from = self.current.insert(alias.to_string(), to);
        self.history.push(AliasEvent {
            alias: alias.to_string(),
            from,
            to,
            at: now_rfc3339(),
            action,
        });
        from
    }

    /// The version `production` goes back to: the `from` of the latest production change
    /// that no later rollback has undone. Each rollback undoes one earlier change.
    fn rollback_target(&self) -> Option<u32> {
        let mut undone = 0usize;
        for e in self.history.iter().rev().filter(|e| e.alias == PRODUCTION) {
            if e.action == AliasAction::Rollback {
                undone += 1;
            } else if undone > 0 {
                undone -= 1;
            } else {
                return e.from;
            }
        }
        None
    }
}

/// One entry of the `history` array of `aliases.json`.
fn parse_event(item: &Value) -> Option<AliasEvent> {
    let field = |k: &str| item.get(k).and_then(Value::as_str);
    let from = match item.get("from") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(parse_version_dir(s)?),
        Some(_) => return None,
    };
    Some(AliasEvent {
        alias: field("alias")?.to_string(),
        from,
        to: parse_version_dir(field("to")?)?,
        at: field("at").unwrap_or_default().to_string(),
        action: AliasAction::parse(field("action")?)?,
    })
}

impl Registry {
    /// A registry rooted at the models directory (created on first publish).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Registry { root: root.into() }
    }

    /// The models directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<name>/alerts.db`: model `name`'s alert state and outbox unless
    /// configured otherwise.
    pub fn default_outbox(&self, name: &str) -> PathBuf {
        self.root.join(name).join("alerts.db")
    }

    /// `<root>/<name>/vN`, whether it exists or not.
    pub fn version_dir(&self, name: &str, version: u32) -> PathBuf {
        self.root.join(name).join(version_dir(version))
    }

    /// The latest modification time of a version's directory and its files: what changes
    /// when an operator repairs a version in place.
    pub fn version_stamp(&self, name: &str, version: u32) -> Option<SystemTime> {
        newest_mtime(&self.version_dir(name, version))
    }

    /// Writes a new immutable version. Sets the registry's part of `manifest`: `name`,
    /// `version` ("vN"), `created_at` (RFC 3339 UTC), `crate_version` and `files` (file
    /// name -> sha256 hex of every file). The first version of
    /// a name (no `production` yet) becomes `production`; later ones `staging`, unless
    /// `promote` (then `production`).
    pub fn publish(
        &self,
        name: &str,
        files: Vec<(String, Vec<u8>)>,
        manifest: Manifest,
        promote: bool,
    ) -> Result<Published> {
        self.publish_with_hook(name, files, manifest, promote, &|_| Ok(()))
    }

    /// [`Registry::publish`] with a hook called before each file is written, so tests can
    /// make a write fail half-way.
    fn publish_with_hook(
        &self,
        name: &str,
        files: Vec<(String, Vec<u8>)>,
        mut manifest: Manifest,
        promote: bool,
        before_write: &dyn Fn(&str) -> io::Result<()>,
    ) -> Result<Published> {
        validate_name(name)?;
        if files.is_empty() {
            return Err(Error::Artifact(format!(
                "publish {name}: a version needs at least one file"
            )));
        }
        let mut seen = BTreeSet::new();
        for (file, _) in &files {
            validate_file_name(file)
                .map_err(|m| Error::Artifact(format!("publish {name}: {m}")))?;
            if !seen.insert(file.as_str()) {
                return Err(Error::Artifact(format!(
                    "publish {name}: file `{file}` given twice"
                )));
            }
        }

        let name_dir = self.root.join(name);
        let created = !name_dir.is_dir();
        fs::create_dir_all(&name_dir).map_err(|e| Error::io(&name_dir, e))?;
        if created {
            sync_dir(&self.root)?;
        }

        // Write the files outside the lock: they can be large, and nothing sees them yet.
        let tmp = TmpDir::create(&name_dir)?;
        let mut checksums = BTreeMap::new();
        for (file, bytes) in &files {
            let path = tmp.path.join(file);
            before_write(file).map_err(|e| Error::io(&path, e))?;
            write_synced(&path, bytes)?;
            checksums.insert(file.clone(), sha256_hex(bytes));
        }
        drop(files);

        let _lock = self.lock(name)?;
        clean_stale(&name_dir);
        let mut aliases = self.read_aliases(name)?;
        let version = self.next_version(name, &aliases)?;
        let vdir = version_dir(version);
        let created_at = now_rfc3339();
        manifest.name = name.to_string();
        manifest.version.clone_from(&vdir);
        manifest.created_at = created_at;
        manifest.crate_version = env!("CARGO_PKG_VERSION").to_string();
        manifest.files = checksums;
        let manifest_bytes = manifest
            .to_pretty_bytes()
            .map_err(|e| Error::Artifact(format!("publish {name} {vdir}: manifest: {e}")))?;
        write_synced(&tmp.path.join(MANIFEST_FILE), &manifest_bytes)?;
        sync_dir(&tmp.path)?;

        let dir = name_dir.join(&vdir);
        fs::rename(&tmp.path, &dir).map_err(|e| {
            Error::io(
                &dir,
                io::Error::new(
                    e.kind(),
                    format!("renaming {} into place: {e}", tmp.path.display()),
                ),
            )
        })?;
        tmp.keep();
        sync_dir(&name_dir)?;

        let alias = if promote || aliases.get(PRODUCTION).is_none() {
            PRODUCTION
        } else {
            STAGING
        };
        aliases.set(alias, version, AliasAction::Publish);
        self.write_aliases(name, &aliases)?;

        Ok(Published {
            name: name.to_string(),
            version,
            dir,
            aliases_set: vec![alias.to_string()],
        })
    }

    /// Every version of `name`, ascending. Errors if the name has no directory or a
    /// manifest cannot be read.
    pub fn versions(&self, name: &str) -> Result<Vec<VersionInfo>> {
        self.versions_each(name)?
            .into_iter()
            .map(|(_, info)| info)
            .collect()
    }

    /// Every version of `name`, ascending, each with its listing or the error reading its
    /// manifest, so that `models list` and `models verify` report every broken version
    /// and go on past it. Errors only if the name has no directory or its aliases cannot
    /// be read.
    pub fn versions_each(&self, name: &str) -> Result<Vec<(u32, Result<VersionInfo>)>> {
        validate_name(name)?;
        let name_dir = self.root.join(name);
        if !name_dir.is_dir() {
            return Err(self.no_model(name));
        }
        let aliases = self.read_aliases(name)?;
        Ok(self
            .version_numbers(name)?
            .into_iter()
            .map(|version| {
                let info = self
                    .read_manifest(name, version)
                    .map(|manifest| VersionInfo {
                        version,
                        created_at: manifest.created_at.clone(),
                        aliases: aliases.of_version(version),
                        manifest,
                    });
                (version, info)
            })
            .collect())
    }

    /// The model names with at least one version, sorted. Empty if the root does not exist.
    pub fn names(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.root, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.root, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if validate_name(&name).is_err() || !entry.path().is_dir() {
                continue;
            }
            if !self.version_numbers(&name)?.is_empty() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// The aliases of `name` and their history; empty when `aliases.json` does not exist.
    pub fn aliases(&self, name: &str) -> Result<Aliases> {
        validate_name(name)?;
        self.read_aliases(name)
    }

    /// The version a selector designates; errors if the alias is unset or the version
    /// does not exist.
    pub fn resolve(&self, name: &str, sel: &Selector) -> Result<u32> {
        validate_name(name)?;
        let versions = self.version_numbers(name)?;
        if versions.is_empty() && !self.root.join(name).is_dir() {
            return Err(self.no_model(name));
        }
        let known = || describe_versions(&versions);
        match sel {
            Selector::Version(v) => {
                if versions.contains(v) {
                    Ok(*v)
                } else {
                    Err(Error::VersionNotFound {
                        name: name.to_string(),
                        version: *v,
                        dir: self.root.join(name),
                        known: known(),
                    })
                }
            }
            Selector::Alias(alias) => {
                let aliases = self.read_aliases(name)?;
                let Some(v) = aliases.get(alias) else {
                    let set: Vec<_> = aliases.current.keys().map(String::as_str).collect();
                    return Err(Error::AliasMissing {
                        name: name.to_string(),
                        alias: alias.clone(),
                        file: self.root.join(name).join(ALIASES_FILE),
                        set: if set.is_empty() {
                            "none".to_string()
                        } else {
                            set.join(", ")
                        },
                    });
                };
                if versions.contains(&v) {
                    Ok(v)
                } else {
                    Err(Error::corrupt(
                        self.root.join(name).join(ALIASES_FILE),
                        "aliases file",
                        format!(
                            "alias `{alias}` of model {name} points to v{v}, which does not exist ({})",
                            known()
                        ),
                    ))
                }
            }
        }
    }

    /// Reads a version and verifies every file against the manifest checksums; refuses a
    /// missing file or a mismatch, naming the file and version.
    pub fn load(&self, name: &str, sel: &Selector) -> Result<LoadedVersion> {
        let version = self.resolve(name, sel)?;
        let (manifest, files) = self.read_verified(name, version)?;
        Ok(LoadedVersion {
            name: name.to_string(),
            version,
            dir: self.version_dir(name, version),
            manifest,
            files,
        })
    }

    /// Checks every file of a version against its manifest checksum. The caller
    /// additionally checks that the model deserialises.
    pub fn verify(&self, name: &str, version: u32) -> Result<()> {
        self.resolve(name, &Selector::Version(version))?;
        self.read_verified(name, version).map(|_| ())
    }

    /// Points `alias` at `version` (which must exist and verify) and records the change.
    /// Returns the previous target. Pointing an alias where it already points changes
    /// nothing and records nothing.
    pub fn promote(&self, name: &str, version: u32, alias: &str) -> Result<Option<u32>> {
        validate_name(name)?;
        validate_alias(alias)?;
        let _lock = self.lock_existing(name)?;
        self.verify(name, version)?;
        let mut aliases = self.read_aliases(name)?;
        if aliases.get(alias) == Some(version) {
            return Ok(Some(version));
        }
        let previous = aliases.set(alias, version, AliasAction::Promote);
        self.write_aliases(name, &aliases)?;
        Ok(previous)
    }

    /// Moves `production` back to the version it pointed to before the latest change not
    /// already undone (two rollbacks go back two steps), and records the rollback. Errors
    /// when the history holds no earlier production version. Returns the new target.
    pub fn rollback(&self, name: &str) -> Result<u32> {
        validate_name(name)?;
        let _lock = self.lock_existing(name)?;
        let mut aliases = self.read_aliases(name)?;
        let file = self.root.join(name).join(ALIASES_FILE);
        let current = aliases.get(PRODUCTION).ok_or_else(|| {
            Error::Artifact(format!(
                "{}: model {name} has no production version to roll back",
                file.display()
            ))
        })?;
        let target = aliases.rollback_target().ok_or_else(|| {
            Error::Artifact(format!(
                "{}: model {name} has no earlier production version to roll back to (production is v{current})",
                file.display()
            ))
        })?;
        self.verify(name, target)?;
        aliases.set(PRODUCTION, target, AliasAction::Rollback);
        self.write_aliases(name, &aliases)?;
        Ok(target)
    }

    // ----- internals -------------------------------------------------------------------

    fn no_model(&self, name: &str) -> Error {
        Error::ModelNotFound {
            name: name.to_string(),
            models_dir: self.root.clone(),
        }
    }

    /// Takes the exclusive lock of `name`, creating the lock file if needed.
    fn lock(&self, name: &str) -> Result<File> {
        let path = self.root.join(name).join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        fs2::FileExt::lock_exclusive(&file).map_err(|e| Error::io(&path, e))?;
        Ok(file)
    }

    /// Like [`Registry::lock`], but never creates the model directory.
    fn lock_existing(&self, name: &str) -> Result<File> {
        if !self.root.join(name).is_dir() {
            return Err(self.no_model(name));
        }
        self.lock(name)
    }

    /// The version numbers present on disk, ascending. Only canonical `vN` directories
    /// count; `.tmp-*` and anything else is ignored.
    fn version_numbers(&self, name: &str) -> Result<Vec<u32>> {
        let dir = self.root.join(name);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let Some(v) = entry.file_name().to_str().and_then(parse_version_dir) else {
                continue;
            };
            if entry
                .file_type()
                .map_err(|e| Error::io(entry.path(), e))?
                .is_dir()
            {
                out.push(v);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// One more than any version on disk or mentioned by the aliases, so a number is never
    /// reused even if a directory was removed by hand.
    fn next_version(&self, name: &str, aliases: &Aliases) -> Result<u32> {
        let on_disk = self.version_numbers(name)?.into_iter().max().unwrap_or(0);
        let in_aliases = aliases
            .current
            .values()
            .copied()
            .chain(
                aliases
                    .history
                    .iter()
                    .flat_map(|e| e.from.into_iter().chain([e.to])),
            )
            .max()
            .unwrap_or(0);
        on_disk
            .max(in_aliases)
            .checked_add(1)
            .ok_or_else(|| Error::Artifact(format!("model {name}: no version number left")))
    }

    fn read_aliases(&self, name: &str) -> Result<Aliases> {
        let path = self.root.join(name).join(ALIASES_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Aliases::default()),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(&path, "aliases file", e))?;
        Aliases::from_json(&value, &path)
    }

    /// Replaces `aliases.json` atomically. The caller holds the lock.
    fn write_aliases(&self, name: &str, aliases: &Aliases) -> Result<()> {
        let path = self.root.join(name).join(ALIASES_FILE);
        let bytes = serde_json::to_vec_pretty(&aliases.to_json())
            .map_err(|e| Error::Artifact(format!("{}: {e}", path.display())))?;
        crate::fsutil::write_atomic(&path, &bytes)
    }

    /// Reads and parses `manifest.json` of a version; it must be a JSON object.
    fn read_manifest(&self, name: &str, version: u32) -> Result<Manifest> {
        let path = self.version_dir(name, version).join(MANIFEST_FILE);
        let what = || format!("manifest of {name} v{version}");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::corrupt(&path, what(), "the file is missing"))
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(&path, what(), e))?;
        if !value.is_object() {
            return Err(Error::corrupt(&path, what(), "not a JSON object"));
        }
        serde_json::from_value(value).map_err(|e| Error::corrupt(&path, what(), e))
    }

    /// Reads the manifest and every file it lists, checking name, version and checksums.
    fn read_verified(
        &self,
        name: &str,
        version: u32,
    ) -> Result<(Manifest, BTreeMap<String, Vec<u8>>)> {
        let dir = self.version_dir(name, version);
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest = self.read_manifest(name, version)?;
        let bad = |what: String| {
            Error::corrupt(
                &manifest_path,
                format!("manifest of {name} v{version}"),
                what,
            )
        };
        let shown = |s: &str| {
            if s.is_empty() {
                "none".to_string()
            } else {
                s.to_string()
            }
        };
        if manifest.name != name {
            return Err(bad(format!(
                "manifest names model \"{}\", expected \"{name}\"",
                shown(&manifest.name)
            )));
        }
        if parse_version_dir(&manifest.version) != Some(version) {
            return Err(bad(format!(
                "manifest says version \"{}\", expected \"v{version}\"",
                shown(&manifest.version)
            )));
        }
        let listed = &manifest.files;
        if listed.is_empty() {
            return Err(bad("manifest lists no files".into()));
        }
        let mut files = BTreeMap::new();
        for (file, expected) in listed {
            if let Err(m) = validate_file_name(file) {
                return Err(bad(m));
            }
            if !(expected.len() == 64 && expected.bytes().all(|b| b.is_ascii_hexdigit())) {
                return Err(bad(format!(
                    "checksum of `{file}` is not a SHA-256 hex string"
                )));
            }
            let path = dir.join(file);
            let bytes = match fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(Error::corrupt(
                        &path,
                        format!("file of {name} v{version}"),
                        "missing (listed in its manifest)",
                    ))
                }
                Err(e) => return Err(Error::io(&path, e)),
            };
            let actual = sha256_hex(&bytes);
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(Error::corrupt(
                    &path,
                    format!("file of {name} v{version}"),
                    format!("checksum mismatch (manifest says {expected}, file is {actual})"),
                ));
            }
            files.insert(file.clone(), bytes);
        }
        Ok((manifest, files))
    }
}

/// A `.tmp-<uuid>` directory removed on drop unless [`TmpDir::keep`] was called.
struct TmpDir {
    path: PathBuf,
    keep: bool,
}

impl TmpDir {
    fn create(parent: &Path) -> Result<Self> {
        let path = parent.join(format!("{TMP_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        fs::create_dir(&path).map_err(|e| Error::io(&path, e))?;
        Ok(TmpDir { path, keep: false })
    }

    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Removes `.tmp-*` entries of a model directory whose newest modification is older than
/// [`STALE_AFTER`]: the leftovers of crashed publishes. Best effort; the caller holds the lock.
fn clean_stale(name_dir: &Path) {
    let Ok(entries) = fs::read_dir(name_dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let is_tmp = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(TMP_PREFIX));
        if !is_tmp {
            continue;
        }
        let path = entry.path();
        let Some(newest) = newest_mtime(&path) else {
            continue;
        };
        if now
            .duration_since(newest)
            .is_ok_and(|age| age > STALE_AFTER)
        {
            let _ = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
        }
    }
}

/// The latest modification time of a file, or of a directory and its direct entries.
fn newest_mtime(path: &Path) -> Option<SystemTime> {
    let mut newest = fs::symlink_metadata(path).ok()?.modified().ok()?;
    if path.is_dir() {
        for entry in fs::read_dir(path).ok()?.flatten() {
            if let Some(t) = entry.metadata().ok().and_then(|m| m.modified().ok()) {
                newest = newest.max(t);
            }
        }
    }
    Some(newest)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn version_dir(version: u32) -> String {
    format!("v{version}")
}

/// `"v3"` -> 3; only the canonical form (no leading zeros, from 1).
fn parse_version_dir(s: &str) -> Option<u32> {
    let digits = s.strip_prefix('v')?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn describe_versions(versions: &[u32]) -> String {
    if versions.is_empty() {
        "it has no versions".to_string()
    } else {
        let list: Vec<_> = versions.iter().map(|v| version_dir(*v)).collect();
        format!("versions: {}", list.join(", "))
    }
}

fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Model names: `[A-Za-z0-9_-]{1,64}`.
pub fn validate_name(name: &str) -> Result<()> {
    if is_name(name) {
        Ok(())
    } else {
        Err(Error::Artifact(format!(
            "invalid model name `{name}`: use 1 to 64 letters, digits, `_` or `-`"
        )))
    }
}

/// Alias names: like model names, but neither `history` nor anything that reads as a
/// version (`v3`, `3`).
pub fn validate_alias(alias: &str) -> Result<()> {
    let looks_like_version = {
        let d = alias.strip_prefix(['v', 'V']).unwrap_or(alias);
        !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
    };
    if !is_name(alias) || alias == HISTORY_KEY || looks_like_version {
        return Err(Error::Artifact(format!(
            "invalid alias `{alias}`: use 1 to 64 letters, digits, `_` or `-`, not a version number and not `history`"
        )));
    }
    Ok(())
}

/// File names inside a version: `[A-Za-z0-9._-]{1,128}`, not starting with `.`, not the manifest.
fn validate_file_name(file: &str) -> std::result::Result<(), String> {
    let ok = (1..=128).contains(&file.len())
        && !file.starts_with('.')
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return Err(format!(
            "invalid file name `{file}`: use letters, digits, `.`, `_` or `-`, not starting with `.`"
        ));
    }
    if file == MANIFEST_FILE {
        return Err(format!("`{MANIFEST_FILE}` is written by the registry"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    fn files(model: &[u8]) -> Vec<(String, Vec<u8>)> {
        vec![
            ("model.bin".into(), model.to_vec()),
            ("report.html".into(), b"<html>report</html>".to_vec()),
            ("metrics.json".into(), br#"{"roc_auc": 0.81}"#.to_vec()),
        ]
    }

    fn manifest() -> Manifest {
        Manifest {
            algorithm: "gbdt".into(),
            horizon_days: 30,
            ..Manifest::default()
        }
    }

    fn registry() -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::new(dir.path().join("models"));
        (dir, reg)
    }

    /// Every file under `root` with its bytes (directories as `None`).
    fn snapshot(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                if path.is_dir() {
                    out.insert(rel, None);
                    stack.push(path);
                } else {
                    out.insert(rel, Some(fs::read(&path).unwrap()));
                }
            }
        }
        out
    }

    fn artifact_message(err: Error) -> String {
        match err {
            Error::Artifact(_)
            | Error::ModelNotFound { .. }
            | Error::AliasMissing { .. }
            | Error::VersionNotFound { .. }
            | Error::Corrupt { .. } => err.chain().to_string(),
            other => panic!("expected an artifact error, got {other:?}"),
        }
    }

    #[test]
    fn publish_writes_the_layout_and_the_checksums() {
        let (_tmp, reg) = registry();
        let p = reg
            .publish("churn", files(b"weights"), manifest(), false)
            .unwrap();
        assert_eq!(p.version, 1);
        assert_eq!(p.dir, reg.root().join("churn").join("v1"));
        for f in ["manifest.json", "model.bin", "report.html", "metrics.json"] {
            assert!(p.dir.join(f).is_file(), "{f} missing");
        }
        assert!(reg.root().join("churn").join("aliases.json").is_file());

        let m: Value =
            serde_json::from_slice(&fs::read(p.dir.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(m["name"], "churn");
        assert_eq!(m["version"], "v1");
        assert_eq!(m["algorithm"], "gbdt", "the trainer's keys are kept");
        assert_eq!(m["crate_version"], env!("CARGO_PKG_VERSION"));
        let created = m["created_at"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(created).is_ok(),
            "{created}"
        );
        assert!(created.ends_with('Z'));
        let listed = m["files"].as_object().unwrap();
        assert_eq!(listed.len(), 3);
        for (f, bytes) in files(b"weights") {
            assert_eq!(listed[&f], sha256_hex(&bytes));
            assert_eq!(fs::read(p.dir.join(&f)).unwrap(), bytes);
        }
        // No temporary directory left behind.
        let leftovers: Vec<_> = fs::read_dir(reg.root().join("churn"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(TMP_PREFIX))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        let loaded = reg.load("churn", &"production".parse().unwrap()).unwrap();
        assert_eq!(loaded.version, 1);
        assert_eq!(loaded.files["model.bin"], b"weights");
        assert_eq!(loaded.manifest.to_json().unwrap(), m);
        reg.verify("churn", 1).unwrap();
        assert_eq!(reg.names().unwrap(), vec!["churn".to_string()]);
    }

    #[test]
    fn aliases_json_keeps_production_and_staging_at_the_top_level_with_a_history() {
        let (_tmp, reg) = registry();
        reg.publish("churn", files(b"a"), manifest(), false)
            .unwrap();
        reg.publish("churn", files(b"b"), manifest(), false)
            .unwrap();
        let path = reg.root().join("churn").join("aliases.json");
        let v: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["production"], "v1");
        assert_eq!(v["staging"], "v2");
        let h = v["history"].as_array().unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0]["alias"], "production");
        assert_eq!(h[0]["from"], Value::Null);
        assert_eq!(h[0]["to"], "v1");
        assert_eq!(h[0]["action"], "publish");
        assert_eq!(h[1]["alias"], "staging");
        assert_eq!(h[1]["to"], "v2");

        // A hand-written file without history is accepted.
        fs::write(&path, r#"{"production": "v2", "staging": "v1"}"#).unwrap();
        let a = reg.aliases("churn").unwrap();
        assert_eq!(a.get("production"), Some(2));
        assert!(a.history.is_empty());
        // A malformed one is refused with the file named.
        fs::write(&path, r#"{"production": 2}"#).unwrap();
        let msg = artifact_message(reg.aliases("churn").unwrap_err());
        assert!(
            msg.contains("aliases.json") && msg.contains("production"),
            "{msg}"
        );
    }

    #[test]
    fn the_first_publish_is_production_the_second_staging_and_promote_true_moves_production() {
        let (_tmp, reg) = registry();
        let p1 = reg
            .publish("churn", files(b"1"), manifest(), false)
            .unwrap();
        assert_eq!(p1.aliases_set, vec!["production"]);
        let p2 = reg
            .publish("churn", files(b"2"), manifest(), false)
            .unwrap();
        assert_eq!(p2.aliases_set, vec!["staging"]);
        let a = reg.aliases("churn").unwrap();
        assert_eq!(a.get(PRODUCTION), Some(1));
        assert_eq!(a.get(STAGING), Some(2));

        let p3 = reg.publish("churn", files(b"3"), manifest(), true).unwrap();
        assert_eq!(p3.aliases_set, vec!["production"]);
        let a = reg.aliases("churn").unwrap();
        assert_eq!(a.get(PRODUCTION), Some(3));
        assert_eq!(a.get(STAGING), Some(2));
        assert_eq!(
            reg.resolve("churn", &"production".parse().unwrap())
                .unwrap(),
            3
        );
        assert_eq!(
            reg.resolve("churn", &"staging".parse().unwrap()).unwrap(),
            2
        );

        let vs = reg.versions("churn").unwrap();
        assert_eq!(
            vs.iter().map(|v| v.version).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert!(vs[0].aliases.is_empty());
        assert_eq!(vs[1].aliases, vec!["staging"]);
        assert_eq!(vs[2].aliases, vec!["production"]);
        assert!(!vs[2].created_at.is_empty());
    }

    #[test]
    fn versions_are_immutable_and_publishing_again_makes_v2_with_v1_bytes_unchanged() {
        let (_tmp, reg) = registry();
        reg.publish("churn", files(b"first"), manifest(), false)
            .unwrap();
        let v1 = reg.root().join("churn").join("v1");
        let before = snapshot(&v1);
        let p2 = reg
            .publish("churn", files(b"second"), manifest(), true)
            .unwrap();
        assert_eq!(p2.version, 2);
        assert_eq!(snapshot(&v1), before);
        assert_eq!(
            reg.load("churn", &Selector::Version(1)).unwrap().files["model.bin"],
            b"first"
        );
        assert_eq!(
            reg.load("churn", &Selector::Version(2)).unwrap().files["model.bin"],
            b"second"
        );
    }

    #[test]
    fn a_failure_mid_write_leaves_the_registry_exactly_as_it_was_with_no_visible_version() {
        let (_tmp, reg) = registry();
        let fail_on_second = |file: &str| {
            if file == "report.html" {
                Err(io::Error::other("disk full (simulated)"))
            } else {
                Ok(())
            }
        };

        // On an empty registry: nothing becomes visible.
        let err = reg
            .publish_with_hook("churn", files(b"x"), manifest(), false, &fail_on_second)
            .unwrap_err();
        assert!(err.to_string().contains("report.html"), "{err}");
        assert!(reg.names().unwrap().is_empty());
        assert!(reg.versions("churn").unwrap().is_empty());
        assert!(reg.aliases("churn").unwrap().current.is_empty());
        assert!(reg
            .load("churn", &Selector::Alias("production".into()))
            .is_err());

        // On a registry with a version: byte-for-byte unchanged.
        reg.publish("churn", files(b"good"), manifest(), false)
            .unwrap();
        let before = snapshot(reg.root());
        reg.publish_with_hook("churn", files(b"y"), manifest(), true, &fail_on_second)
            .unwrap_err();
        assert_eq!(snapshot(reg.root()), before);
        assert_eq!(
            reg.resolve("churn", &Selector::Alias("production".into()))
                .unwrap(),
            1
        );

        // The failed attempt did not burn a version number.
        assert_eq!(
            reg.publish("churn", files(b"z"), manifest(), false)
                .unwrap()
                .version,
            2
        );
    }

    #[test]
    fn a_half_written_temporary_directory_is_never_listed_and_is_cleaned_when_stale() {
        let (_tmp, reg) = registry();
        reg.publish("churn", files(b"a"), manifest(), false)
            .unwrap();
        let name_dir = reg.root().join("churn");
        // What a crash between writing files and the rename leaves behind.
        let fresh = name_dir.join(".tmp-fresh");
        let stale = name_dir.join(".tmp-stale");
        for d in [&fresh, &stale] {
            fs::create_dir(d).unwrap();
            fs::write(d.join("model.bin"), b"partial").unwrap();
        }
        let old = SystemTime::now() - Duration::from_secs(2 * 3600);
        File::open(stale.join("model.bin"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        File::open(&stale).unwrap().set_modified(old).unwrap();

        assert_eq!(reg.versions("churn").unwrap().len(), 1);
        assert_eq!(
            reg.publish("churn", files(b"b"), manifest(), false)
                .unwrap()
                .version,
            2
        );
        assert!(!stale.exists(), "stale temporary directory kept");
        assert!(
            fresh.exists(),
            "a recent one may belong to a running publish"
        );
        assert_eq!(reg.versions("churn").unwrap().len(), 2);
    }

    #[test]
    fn concurrent_publishes_from_eight_threads_get_eight_distinct_versions_and_consistent_aliases()
    {
        let (_tmp, reg) = registry();
        let reg = Arc::new(reg);
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let reg = Arc::clone(&reg);
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    let model = format!("model-{i}").into_bytes();
                    let p = reg
                        .publish("churn", files(&model), manifest(), false)
                        .unwrap();
                    (p, model)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();

        let versions: BTreeSet<u32> = results.iter().map(|(p, _)| p.version).collect();
        assert_eq!(versions, (1..=8).collect());
        // Each version holds the bytes of the thread that got it.
        for (p, model) in &results {
            let loaded = reg.load("churn", &Selector::Version(p.version)).unwrap();
            assert_eq!(&loaded.files["model.bin"], model);
        }
        // Exactly one publish saw no production; every other one set staging.
        let production: Vec<_> = results
            .iter()
            .filter(|(p, _)| p.aliases_set == ["production"])
            .collect();
        assert_eq!(production.len(), 1);
        let a = reg.aliases("churn").unwrap();
        assert_eq!(a.get(PRODUCTION), Some(production[0].0.version));
        assert_eq!(a.history.len(), 8, "no alias update lost");
        // The history chains: each staging change starts where the previous one ended.
        let staging: Vec<_> = a.history.iter().filter(|e| e.alias == STAGING).collect();
        assert_eq!(staging.len(), 7);
        for w in staging.windows(2) {
            assert_eq!(w[1].from, Some(w[0].to));
        }
        assert_eq!(a.get(STAGING), Some(staging.last().unwrap().to));
        assert_eq!(reg.versions("churn").unwrap().len(), 8);
    }

    #[test]
    fn promote_returns_the_previous_target_and_records_the_history() {
        let (_tmp, reg) = registry();
        for b in [b"1", b"2", b"3"] {
            reg.publish("churn", files(b), manifest(), false).unwrap();
        }
        assert_eq!(reg.promote("churn", 3, "production").unwrap(), Some(1));
        assert_eq!(reg.promote("churn", 2, "canary").unwrap(), None);
        assert_eq!(
            reg.promote("churn", 3, "production").unwrap(),
            Some(3),
            "no-op"
        );
        let a = reg.aliases("churn").unwrap();
        assert_eq!(a.get("production"), Some(3));
        assert_eq!(a.get("canary"), Some(2));
        let last = &a.history[a.history.len() - 2];
        assert_eq!(
            (last.alias.as_str(), last.from, last.to),
            ("production", Some(1), 3)
        );
        assert_eq!(last.action, AliasAction::Promote);
        assert_eq!(a.history.len(), 5);

        let msg = artifact_message(reg.promote("churn", 9, "production").unwrap_err());
        assert!(msg.contains("v9"), "{msg}");
        assert!(reg.promote("churn", 1, "history").is_err());
        assert!(reg.promote("churn", 1, "v2").is_err());
        assert!(reg.promote("other", 1, "production").is_err());
    }

    #[test]
    fn two_rollbacks_in_a_row_go_back_two_steps() {
        let (_tmp, reg) = registry();
        for b in [b"1", b"2", b"3", b"4"] {
            reg.publish("churn", files(b), manifest(), false).unwrap();
        }
        reg.promote("churn", 2, PRODUCTION).unwrap();
        reg.promote("churn", 3, PRODUCTION).unwrap();
        reg.promote("churn", 4, PRODUCTION).unwrap();

        assert_eq!(reg.rollback("churn").unwrap(), 3);
        assert_eq!(reg.rollback("churn").unwrap(), 2);
        assert_eq!(
            reg.resolve("churn", &"production".parse().unwrap())
                .unwrap(),
            2
        );
        let a = reg.aliases("churn").unwrap();
        let last = a.history.last().unwrap();
        assert_eq!(
            (last.from, last.to, last.action),
            (Some(3), 2, AliasAction::Rollback)
        );

        // A promote after rollbacks is undone first, then the walk continues.
        reg.promote("churn", 4, PRODUCTION).unwrap();
        assert_eq!(reg.rollback("churn").unwrap(), 2);
        assert_eq!(reg.rollback("churn").unwrap(), 1);
        // v1 was the first production: nothing earlier.
        let msg = artifact_message(reg.rollback("churn").unwrap_err());
        assert!(msg.contains("no earlier production version"), "{msg}");
        assert_eq!(
            reg.resolve("churn", &"production".parse().unwrap())
                .unwrap(),
            1
        );
    }

    #[test]
    fn rollback_with_no_history_is_an_error() {
        let (_tmp, reg) = registry();
        assert!(reg.rollback("churn").is_err(), "unknown model");
        reg.publish("churn", files(b"1"), manifest(), false)
            .unwrap();
        reg.publish("churn", files(b"2"), manifest(), false)
            .unwrap();
        let before = snapshot(reg.root());
        let msg = artifact_message(reg.rollback("churn").unwrap_err());
        assert!(msg.contains("churn") && msg.contains("v1"), "{msg}");
        assert_eq!(
            snapshot(reg.root()),
            before,
            "a refused rollback writes nothing"
        );
    }

    #[test]
    fn a_corrupted_file_is_detected_by_verify_and_by_load_naming_the_file_and_version() {
        let (_tmp, reg) = registry();
        reg.publish("churn", files(b"weights"), manifest(), false)
            .unwrap();
        let model = reg.root().join("churn").join("v1").join("model.bin");
        fs::write(&model, b"weightz").unwrap();

        let msg = artifact_message(reg.verify("churn", 1).unwrap_err());
        assert!(msg.contains("churn/v1/model.bin"), "{msg}");
        assert!(msg.contains("checksum mismatch"), "{msg}");
        assert!(
            msg.contains(&sha256_hex(b"weights")) && msg.contains(&sha256_hex(b"weightz")),
            "{msg}"
        );
        let msg = artifact_message(
            reg.load("churn", &"production".parse().unwrap())
                .unwrap_err(),
        );
        assert!(
            msg.contains("churn/v1/model.bin") && msg.contains("v1"),
            "{msg}"
        );
        // A corrupted version cannot be promoted either.
        assert!(reg.promote("churn", 1, "staging").is_err());
    }

    #[test]
    fn load_refuses_a_missing_alias_version_file_or_an_unparsable_manifest_with_a_clear_message() {
        let (_tmp, reg) = registry();
        let err = reg.load("churn", &Selector::Version(1)).unwrap_err();
        assert!(matches!(&err, Error::ModelNotFound { name, .. } if name == "churn"));
        let msg = artifact_message(err);
        assert!(msg.contains("no model named `churn`"), "{msg}");

        reg.publish("churn", files(b"w"), manifest(), false)
            .unwrap();
        let err = reg.load("churn", &"staging".parse().unwrap()).unwrap_err();
        assert!(matches!(&err, Error::AliasMissing { alias, .. } if alias == "staging"));
        let msg = artifact_message(err);
        assert!(
            msg.contains("no alias `staging`") && msg.contains("production"),
            "{msg}"
        );
        let err = reg.load("churn", &"v7".parse().unwrap()).unwrap_err();
        assert!(matches!(err, Error::VersionNotFound { version: 7, .. }));
        let msg = artifact_message(err);
        assert!(msg.contains("no version v7") && msg.contains("v1"), "{msg}");

        let v1 = reg.root().join("churn").join("v1");
        fs::remove_file(v1.join("report.html")).unwrap();
        let err = reg.load("churn", &Selector::Version(1)).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        let msg = artifact_message(err);
        assert!(
            msg.contains("v1/report.html") && msg.contains("missing"),
            "{msg}"
        );

        fs::write(v1.join("manifest.json"), b"{not json").unwrap();
        let err = reg.load("churn", &Selector::Version(1)).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        let msg = artifact_message(err);
        assert!(
            msg.contains("v1/manifest.json") && msg.contains("corrupt manifest of churn v1"),
            "{msg}"
        );
        fs::write(v1.join("manifest.json"), b"[1, 2]").unwrap();
        let msg = artifact_message(reg.load("churn", &Selector::Version(1)).unwrap_err());
        assert!(msg.contains("not a JSON object"), "{msg}");
        assert!(reg.versions("churn").is_err());

        // A manifest copied from another version is refused.
        let p2 = reg
            .publish("churn", files(b"w2"), manifest(), false)
            .unwrap();
        let m2 = fs::read(p2.dir.join("manifest.json")).unwrap();
        fs::write(v1.join("manifest.json"), m2).unwrap();
        fs::write(v1.join("report.html"), b"<html>report</html>").unwrap();
        let msg = artifact_message(reg.verify("churn", 1).unwrap_err());
        assert!(
            msg.contains("v1/manifest.json") && msg.contains("\"v2\""),
            "{msg}"
        );

        // An alias pointing at a version that is gone.
        fs::remove_dir_all(&p2.dir).unwrap();
        let msg = artifact_message(
            reg.resolve("churn", &"staging".parse().unwrap())
                .unwrap_err(),
        );
        assert!(msg.contains("points to v2, which does not exist"), "{msg}");
        // And its number is not reused.
        assert_eq!(
            reg.publish("churn", files(b"w3"), manifest(), false)
                .unwrap()
                .version,
            3
        );
    }

    #[test]
    fn a_corrupt_aliases_file_is_reported_as_corrupt_never_as_a_missing_model() {
        let (_tmp, reg) = registry();
        reg.publish("churn", files(b"w"), manifest(), false)
            .unwrap();
        let aliases = reg.root().join("churn").join(ALIASES_FILE);
        let bad: [&[u8]; 3] = [b"{\"production\": ", b"{\"production\": 3}", b"[]"];
        for bad in bad {
            fs::write(&aliases, bad).unwrap();
            let err = reg
                .resolve("churn", &Selector::Alias(PRODUCTION.into()))
                .unwrap_err();
            assert!(!err.is_missing_model(), "{err:?}");
            let msg = err.to_string();
            assert!(
                msg.contains("aliases.json") && msg.contains("corrupt aliases file"),
                "{msg}"
            );
        }
        // A missing model and a missing alias are the cases publishing fixes.
        assert!(reg
            .resolve("other", &"production".parse().unwrap())
            .unwrap_err()
            .is_missing_model());
        fs::remove_file(&aliases).unwrap();
        assert!(reg
            .resolve("churn", &"production".parse().unwrap())
            .unwrap_err()
            .is_missing_model());
    }

    #[test]
    fn a_manifest_keeps_the_keys_of_a_newer_trainer_and_old_minimal_ones_load() {
        let (_tmp, reg) = registry();
        let mut m = manifest();
        m.extra.insert("experiment".into(), json!({"owner": "ds"}));
        let p = reg.publish("churn", files(b"w"), m, false).unwrap();
        let loaded = reg.load("churn", &Selector::Version(1)).unwrap();
        assert_eq!(loaded.manifest.extra["experiment"]["owner"], "ds");
        assert_eq!(loaded.manifest.algorithm, "gbdt");
        // What an older binary wrote: only some keys, the rest defaulted.
        let path = p.dir.join(MANIFEST_FILE);
        let mut old: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        let obj = old.as_object_mut().unwrap();
        obj.retain(|k, _| {
            ["name", "version", "files", "created_at", "algorithm"].contains(&k.as_str())
        });
        fs::write(&path, serde_json::to_vec_pretty(&old).unwrap()).unwrap();
        let loaded = reg.load("churn", &Selector::Version(1)).unwrap();
        assert_eq!(loaded.manifest.horizon_days, 0);
        assert_eq!(loaded.manifest.algorithm, "gbdt");
    }

    #[test]
    fn selectors_parse_aliases_and_versions() {
        assert_eq!(
            "production".parse::<Selector>().unwrap(),
            Selector::Alias("production".into())
        );
        assert_eq!(
            "staging".parse::<Selector>().unwrap(),
            Selector::Alias("staging".into())
        );
        assert_eq!("v3".parse::<Selector>().unwrap(), Selector::Version(3));
        assert_eq!("3".parse::<Selector>().unwrap(), Selector::Version(3));
        assert_eq!("V12".parse::<Selector>().unwrap(), Selector::Version(12));
        assert!("v0".parse::<Selector>().is_err());
        assert!("0".parse::<Selector>().is_err());
        assert!("v99999999999".parse::<Selector>().is_err());
        assert!("".parse::<Selector>().is_err());
        assert!("../etc".parse::<Selector>().is_err());
        assert!("history".parse::<Selector>().is_err());
        assert_eq!(Selector::Version(3).to_string(), "v3");
        assert_eq!(
            Selector::Alias("production".into()).to_string(),
            "production"
        );
    }

    #[test]
    fn invalid_names_and_file_names_are_refused_before_anything_is_written() {
        let (_tmp, reg) = registry();
        for bad in ["", "a/b", "..", "a b", &"x".repeat(65)] {
            assert!(
                reg.publish(bad, files(b"w"), manifest(), false).is_err(),
                "{bad:?}"
            );
        }
        assert!(reg
            .publish(&"x".repeat(64), files(b"w"), manifest(), false)
            .is_ok());
        let bad_files: [Vec<(String, Vec<u8>)>; 5] = [
            vec![],
            vec![("../model.bin".into(), vec![])],
            vec![(".hidden".into(), vec![])],
            vec![("manifest.json".into(), vec![])],
            vec![("a.bin".into(), vec![]), ("a.bin".into(), vec![])],
        ];
        for f in bad_files {
            assert!(reg.publish("churn", f, manifest(), false).is_err());
        }
        assert!(!reg.root().join("churn").exists());
        assert_eq!(reg.names().unwrap(), vec!["x".repeat(64)]);
        assert!(reg.versions("../x").is_err());
    }
}
