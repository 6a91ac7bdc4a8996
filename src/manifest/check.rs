//! `rowcast validate`'s engine, also run by every command before it touches data: read
//! each manifest, check it against the generated JSON Schema, then check what a schema
//! cannot see (files, environment, URLs, names across files). Every problem of every file
//! is collected in one pass; nothing stops at the first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jsonschema::error::ValidationErrorKind;
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

use super::env;
use super::locate::{Locations, Position};
use super::problem::{dotted, Problem};
use super::project::{ProjectFile, PROJECT_FILE};
use super::schema;
use super::schema_walk::{first_sentence, Node};
use super::sync::{Auth, Destination, Retry, SyncManifest};
use super::urls::{check_function_url, UrlProblem};

/// A sync manifest that passed every check, with its query read.
#[derive(Debug, Clone)]
pub struct SyncSource {
    /// The manifest file.
    pub path: PathBuf,
    pub manifest: SyncManifest,
    /// The model's SQL, from `model.sql` or the `model.sql_file`.
    pub sql: String,
}

/// What a check found: the manifests that are sound and the problems of the others.
#[derive(Debug, Default)]
pub struct Checked {
    /// The project file and its folder, when one was checked and is sound.
    pub project: Option<(PathBuf, ProjectFile)>,
    pub syncs: Vec<SyncSource>,
    pub problems: Vec<Problem>,
    /// How many manifest files were read.
    pub files: usize,
}

/// Which manifests to check.
pub enum Target<'a> {
    /// A project folder: its `rowcast.yaml` and the syncs folder it names.
    Project(&'a Path),
    /// Files and folders named on the command line. A folder holding `rowcast.yaml` is a
    /// project; any other folder is a folder of sync manifests.
    Paths(&'a [PathBuf]),
}

/// Checks the manifests of `target`.
pub fn check(target: Target<'_>) -> Checked {
    let mut checker = Checker::new();
    match target {
        Target::Project(root) => checker.project(root),
        Target::Paths(paths) => {
            for path in paths {
                checker.path(path);
            }
        }
    }
    checker.duplicate_names();
    checker.out
}

struct Checker {
    sync_validator: Validator,
    project_validator: Validator,
    sync_schema: Value,
    project_schema: Value,
    out: Checked,
    /// Where each sync name was declared, to find duplicates across files.
    names: BTreeMap<String, Vec<(PathBuf, Position)>>,
}

impl Checker {
    fn new() -> Self {
        let sync_schema = schema::sync_schema();
        let project_schema = schema::project_schema();
        let compile = |s: &Value| jsonschema::validator_for(s).expect("generated schemas compile");
        Checker {
            sync_validator: compile(&sync_schema),
            project_validator: compile(&project_schema),
            sync_schema,
            project_schema,
            out: Checked::default(),
            names: BTreeMap::new(),
        }
    }

    fn path(&mut self, path: &Path) {
        if path.is_dir() {
            if path.join(PROJECT_FILE).is_file() {
                self.project(path);
            } else {
                self.sync_folder(path);
            }
        } else if path.file_name().is_some_and(|name| name == PROJECT_FILE) {
            self.project_file(path);
        } else if path.exists() {
            self.sync_file(path);
        } else {
            self.out.problems.push(
                Problem::new(path, Position::START, format!("`{}` does not exist", path.display()))
                    .hint("name a manifest file, a folder of manifests or a project folder"),
            );
        }
    }

    fn project(&mut self, root: &Path) {
        let file = root.join(PROJECT_FILE);
        if !file.is_file() {
            let message = format!("`{}` has no `{PROJECT_FILE}`", root.display());
            let hint = "run rowcast in a project folder, pass `--project DIR`, or name the \
                        manifests to check";
            self.out.problems.push(Problem::new(&file, Position::START, message).hint(hint));
            return;
        }
        let syncs = match self.project_file(&file) {
            Some(project) => project.syncs,
            None => "syncs".to_string(),
        };
        self.sync_folder(&root.join(syncs));
    }

    fn project_file(&mut self, path: &Path) -> Option<ProjectFile> {
        let source = self.read(path)?;
        let errors = self.project_validator.iter_errors(&source.value);
        let explained = explain_all(&source, &self.project_schema, errors);
        let sound = explained.is_empty();
        self.out.problems.extend(explained);
        self.out.problems.extend(env_problems(&source));
        if !sound {
            return None;
        }
        let project: ProjectFile = source.typed()?.map_err(|p| self.out.problems.push(p)).ok()?;
        let folder = path.parent().map(Path::to_path_buf).unwrap_or_default();
        self.out.project = Some((folder, project.clone()));
        Some(project)
    }

    fn sync_folder(&mut self, folder: &Path) {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(folder) {
            Ok(entries) => entries
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| is_manifest_name(path) && !path.ends_with(PROJECT_FILE))
                .collect(),
            Err(error) => {
                let message = format!("cannot read the folder `{}`: {error}", folder.display());
                self.out.problems.push(Problem::new(folder, Position::START, message));
                return;
            }
        };
        if files.is_empty() {
            let message = format!("`{}` holds no sync manifests", folder.display());
            let hint = "a sync manifest is a `.yaml` file declaring one sync; see `syncs/` in \
                        the rowcast repository for examples";
            self.out.problems.push(Problem::new(folder, Position::START, message).hint(hint));
        }
        files.sort();
        for file in files {
            self.sync_file(&file);
        }
    }

    fn sync_file(&mut self, path: &Path) {
        let Some(source) = self.read(path) else { return };
        let errors = self.sync_validator.iter_errors(&source.value);
        let explained = explain_all(&source, &self.sync_schema, errors);
        let sound = explained.is_empty();
        self.out.problems.extend(explained);
        self.out.problems.extend(env_problems(&source));
        self.remember_name(&source);
        if !sound {
            return;
        }
        let manifest: SyncManifest = match source.typed() {
            Some(Ok(manifest)) => manifest,
            Some(Err(problem)) => return self.out.problems.push(problem),
            None => return,
        };
        let before = self.out.problems.len();
        let sql = self.sync_semantics(&source, &manifest);
        if let (Some(sql), true) = (sql, self.out.problems.len() == before) {
            self.out.syncs.push(SyncSource { path: path.to_path_buf(), manifest, sql });
        }
    }

    /// Reads a manifest into JSON, or records why it cannot be read.
    fn read(&mut self, path: &Path) -> Option<Source> {
        self.out.files += 1;
        match Source::read(path) {
            Ok(source) => Some(source),
            Err(problem) => {
                self.out.problems.push(*problem);
                None
            }
        }
    }

    fn remember_name(&mut self, source: &Source) {
        if let Some(name) = source.value.get("name").and_then(Value::as_str) {
            let position = source.locations.value("/name").unwrap_or(Position::START);
            let places = self.names.entry(name.to_string()).or_default();
            places.push((source.path.clone(), position));
        }
    }

    /// The checks a schema cannot make. Returns the model's SQL when it could be read.
    fn sync_semantics(&mut self, source: &Source, manifest: &SyncManifest) -> Option<String> {
        let problems = &mut self.out.problems;
        let sql = model_sql(source, manifest).map_err(|p| problems.push(p)).ok();
        problems.extend(destination_problems(source, &manifest.destination));

        if let Retry::Immediately { initial_backoff, max_backoff, .. } = &manifest.retry {
            if initial_backoff > max_backoff {
                let message = format!(
                    "`initial_backoff` ({initial_backoff}) is longer than `max_backoff` \
                     ({max_backoff})"
                );
                problems.push(
                    source
                        .problem("/retry/initial_backoff", message)
                        .hint("make `max_backoff` at least as long as `initial_backoff`"),
                );
            }
        }
        sql
    }

    fn duplicate_names(&mut self) {
        for (name, places) in &self.names {
            if places.len() < 2 {
                continue;
            }
            for (index, (path, position)) in places.iter().enumerate() {
                let others: Vec<String> = places
                    .iter()
                    .enumerate()
                    .filter(|(other, _)| *other != index)
                    .map(|(_, (p, pos))| format!("{}:{}", p.display(), pos.line))
                    .collect();
                let message =
                    format!("sync name `{name}` is also declared in {}", others.join(", "));
                let hint = "sync names are unique in a project, since each keys its own \
                            snapshot; rename one of them";
                self.out
                    .problems
                    .push(Problem::new(path, *position, message).field("/name").hint(hint));
            }
        }
        // Keep only one sound sync per name: a duplicate must not be planned at all.
        let duplicated: Vec<&String> =
            self.names.iter().filter(|(_, p)| p.len() > 1).map(|(n, _)| n).collect();
        self.out.syncs.retain(|sync| !duplicated.contains(&&sync.manifest.name));
    }
}

fn is_manifest_name(path: &Path) -> bool {
    path.is_file() && path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml")
}

/// A manifest read into JSON, with the positions of its nodes.
struct Source {
    path: PathBuf,
    value: Value,
    locations: Locations,
}

impl Source {
    fn read(path: &Path) -> Result<Source, Box<Problem>> {
        let problem = |position, message: String| Box::new(Problem::new(path, position, message));
        let bytes = std::fs::read(path)
            .map_err(|error| problem(Position::START, format!("cannot read this file: {error}")))?;
        let text = String::from_utf8(bytes).map_err(|error| {
            let valid = error.utf8_error().valid_up_to();
            let before = String::from_utf8_lossy(&error.as_bytes()[..valid]).into_owned();
            let position = position_of(&before, valid.min(before.len()));
            let mut p = problem(position, "this file is not UTF-8 text".to_string());
            p.hint = Some("save the manifest as UTF-8".to_string());
            p
        })?;
        if is_blank(&text) {
            let mut p = problem(Position::START, "this file is empty".to_string());
            p.hint = Some("declare one sync in it, or delete it".to_string());
            return Err(p);
        }
        let value: Value = serde_yaml::from_str(&text).map_err(|error| {
            let position = error
                .location()
                .map(|l| Position { line: l.line(), column: l.column() })
                .unwrap_or(Position::START);
            let message = yaml_message(&error);
            let mut p = problem(position, format!("this is not valid YAML: {message}"));
            p.hint = Some(
                "check the indentation (spaces, not tabs) and quote values that contain `:` \
                 or start with `{`, `[`, `*` or `&`"
                    .to_string(),
            );
            p
        })?;
        Ok(Source { path: path.to_path_buf(), locations: Locations::index(&text), value })
    }

    fn problem(&self, pointer: &str, message: String) -> Problem {
        Problem::new(&self.path, self.locations.find(pointer), message).field(pointer)
    }

    /// Deserializes into the typed manifest. After the schema passed this only fails on
    /// what the schema cannot say, such as an overlong duration.
    fn typed<T: serde::de::DeserializeOwned>(&self) -> Option<Result<T, Problem>> {
        Some(serde_json::from_value(self.value.clone()).map_err(|error| {
            Problem::new(&self.path, Position::START, format!("{error}"))
                .hint("correct the value the message names")
        }))
    }
}

fn is_blank(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#') || line == "---"
    })
}

fn position_of(text: &str, byte: usize) -> Position {
    let before = &text[..byte];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Position { line, column }
}

/// serde_yaml's message without the trailing ` at line L column C`, which the position
/// already says.
fn yaml_message(error: &serde_yaml::Error) -> String {
    let text = error.to_string();
    match text.find(" at line ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

/// Explains every schema error as problems at the right place.
fn explain_all<'a>(
    source: &Source,
    schema: &Value,
    errors: impl Iterator<Item = ValidationError<'a>>,
) -> Vec<Problem> {
    let root = Node::root(schema);
    let mut problems = Vec::new();
    for error in errors {
        explain(source, root, &error, &mut problems);
    }
    problems.sort_by_key(|p| p.position);
    problems.dedup();
    problems
}

fn explain(source: &Source, root: Node<'_>, error: &ValidationError<'_>, out: &mut Vec<Problem>) {
    let pointer = error.instance_path().as_str();
    let instance = error.instance();
    let field = dotted(pointer);
    let node = root.at(pointer, &source.value);
    let described = |p: Problem| match node.and_then(|n| n.description()) {
        Some(text) if p.hint.is_none() => p.hint(first_sentence(text)),
        _ => p,
    };
    let quoted = short(instance);

    let problem = match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let allowed = node.map(|n| n.property_names(instance)).unwrap_or_default();
            for key in unexpected {
                let at = format!("{pointer}/{}", super::locate::escape_segment(key));
                let place = if field.is_empty() { "here".into() } else { format!("in `{field}`") };
                let hint = match closest(key, &allowed) {
                    Some(near) => format!("did you mean `{near}`? Allowed: {}", list(&allowed)),
                    None => format!("allowed fields: {}", list(&allowed)),
                };
                out.push(source.problem(&at, format!("unknown field `{key}` {place}")).hint(hint));
            }
            return;
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            let child = node.and_then(|n| n.property(name, instance));
            let hint = child.and_then(|c| c.description()).map(first_sentence);
            let place = if field.is_empty() { String::new() } else { format!(" in `{field}`") };
            let problem = source.problem(pointer, format!("missing field `{name}`{place}"));
            out.push(match hint {
                Some(hint) => problem.hint(format!("`{name}`: {hint}")),
                None => problem,
            });
            return;
        }
        ValidationErrorKind::OneOfNotValid { context } => {
            return explain_one_of(source, root, node, pointer, instance, context, out);
        }
        ValidationErrorKind::OneOfMultipleValid { .. } => source
            .problem(pointer, format!("`{field}` matches more than one of its forms"))
            .hint("give only one of the alternatives, such as `sql` or `sql_file`"),
        ValidationErrorKind::Type { kind } => source.problem(
            pointer,
            format!(
                "`{field}` is {quoted}, {}, but it must be {}",
                type_name(instance),
                kinds(kind)
            ),
        ),
        ValidationErrorKind::Maximum { limit } => {
            source.problem(pointer, format!("`{field}` is {quoted}, above the maximum of {limit}"))
        }
        ValidationErrorKind::Minimum { limit } => {
            source.problem(pointer, format!("`{field}` is {quoted}, below the minimum of {limit}"))
        }
        ValidationErrorKind::Enum { options } => {
            let allowed: Vec<String> =
                options.as_array().map(|o| o.iter().map(short).collect()).unwrap_or_default();
            source
                .problem(pointer, format!("`{field}` is {quoted}, which is not allowed here"))
                .hint(format!("use one of {}", allowed.join(", ")))
        }
        ValidationErrorKind::Constant { expected_value } => source
            .problem(pointer, format!("`{field}` is {quoted}"))
            .hint(format!("it must be {}", short(expected_value))),
        ValidationErrorKind::Pattern { pattern } => source
            .problem(pointer, format!("`{field}` is {quoted}, which does not match `{pattern}`")),
        ValidationErrorKind::MinItems { limit } => source.problem(
            pointer,
            format!("`{field}` has fewer than {limit} item{}", if *limit == 1 { "" } else { "s" }),
        ),
        ValidationErrorKind::UniqueItems => {
            source.problem(pointer, format!("`{field}` lists the same value twice: {quoted}"))
        }
        _ => source.problem(pointer, format!("`{field}`: {error}")),
    };
    out.push(described(problem));
}

/// A `oneOf` failed. For a tagged union (`type: http`, `method: none`, `mode: next_run`)
/// the tag chooses the branch, and that branch's own errors are the useful ones.
fn explain_one_of(
    source: &Source,
    root: Node<'_>,
    node: Option<Node<'_>>,
    pointer: &str,
    instance: &Value,
    context: &[Vec<ValidationError<'static>>],
    out: &mut Vec<Problem>,
) {
    let field = dotted(pointer);
    let tag = node.and_then(|n| n.tag());
    let Some((tag, values)) = tag else {
        // Not tagged: the model's `sql` or `sql_file`, where every branch asks for a field.
        let mut wanted: Vec<String> = context
            .iter()
            .flatten()
            .filter_map(|e| match e.kind() {
                ValidationErrorKind::Required { property } => property.as_str().map(String::from),
                _ => None,
            })
            .collect();
        wanted.dedup();
        let message = format!("`{field}` needs one of {}", list(&wanted));
        out.push(source.problem(pointer, message).hint("give exactly one of them"));
        return;
    };

    let chosen = instance.get(&tag).and_then(Value::as_str);
    match chosen.and_then(|c| values.iter().position(|v| v == c)) {
        Some(index) if index < context.len() => {
            for error in &context[index] {
                explain(source, root, error, out);
            }
        }
        _ => {
            let place = format!("{pointer}/{tag}");
            let message = match chosen {
                Some(chosen) => format!("`{field}.{tag}` is `{chosen}`, which is not known"),
                None if instance.is_object() => format!("`{field}` needs a `{tag}`"),
                None => format!("`{field}` must be a mapping with a `{tag}`"),
            };
            out.push(
                source
                    .problem(&place, message)
                    .hint(format!("`{tag}` is one of {}", list(&values))),
            );
        }
    }
}

fn model_sql(source: &Source, manifest: &SyncManifest) -> Result<String, Problem> {
    if let Some(sql) = &manifest.model.sql {
        return Ok(sql.clone());
    }
    let name = manifest.model.sql_file.as_deref().unwrap_or_default();
    let folder = source.path.parent().unwrap_or(Path::new("."));
    let path = folder.join(name);
    std::fs::read_to_string(&path).map_err(|error| {
        source
            .problem("/model/sql_file", format!("cannot read `{}`: {error}", path.display()))
            .hint("`sql_file` is relative to the manifest's folder; check the name")
    })
}

fn destination_problems(source: &Source, destination: &Destination) -> Vec<Problem> {
    let mut problems = Vec::new();
    let url_problem = |pointer: &str, problem: UrlProblem| {
        source.problem(pointer, problem.message).hint(problem.hint)
    };
    match destination {
        Destination::Http(http) => {
            if let Err(problem) = check_function_url(&http.url) {
                problems.push(url_problem("/destination/url", problem));
            }
        }
        Destination::GoogleCloudFunction(function) => {
            let named = [&function.project, &function.region, &function.function];
            let given = named.iter().filter(|part| part.is_some()).count();
            match (&function.url, given) {
                (Some(url), 0) => {
                    if let Err(problem) = check_function_url(url) {
                        problems.push(url_problem("/destination/url", problem));
                    }
                }
                (Some(_), _) => problems.push(
                    source
                        .problem("/destination/url", "both `url` and `project`/`region`/`function` are given".into())
                        .hint("give `url` for 2nd gen functions and custom domains, or `project`, `region` and `function` for 1st gen, not both"),
                ),
                (None, 3) => {}
                (None, _) => problems.push(
                    source
                        .problem("/destination", "the function is not fully named".into())
                        .hint("give `project`, `region` and `function` (1st gen), or `url` (2nd gen and custom domains)"),
                ),
            }
            if let Auth::BearerTokenEnv { .. } | Auth::None = function.auth {
                // Allowed, for local functions and tokens minted elsewhere.
            }
        }
    }
    problems
}

/// `${VAR}` references whose variable is unset, or that are malformed.
fn env_problems(source: &Source) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut strings = Vec::new();
    collect_strings(&source.value, String::new(), &mut strings);
    for (pointer, text) in strings {
        match env::references(text) {
            Err(message) => problems.push(
                source.problem(&pointer, message).hint("write environment references as `${NAME}`"),
            ),
            Ok(references) => {
                let unset =
                    |r: &&env::EnvRef| r.default.is_none() && std::env::var_os(&r.name).is_none();
                for reference in references.iter().filter(unset) {
                    let message = format!("environment variable `{}` is not set", reference.name);
                    let hint = format!(
                        "set `{}` in the environment that runs rowcast (in CI, the job's env)",
                        reference.name
                    );
                    problems.push(source.problem(&pointer, message).hint(hint));
                }
            }
        }
    }
    problems
}

fn collect_strings<'a>(value: &'a Value, pointer: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::String(text) => out.push((pointer, text)),
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                collect_strings(item, format!("{pointer}/{index}"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let child = format!("{pointer}/{}", super::locate::escape_segment(key));
                collect_strings(item, child, out);
            }
        }
        _ => {}
    }
}

/// A value quoted for a message, cut to a readable length.
fn short(value: &Value) -> String {
    let text = value.to_string();
    let text = if text.chars().count() > 60 {
        format!("{}…", text.chars().take(57).collect::<String>())
    } else {
        text
    };
    format!("`{text}`")
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn kinds(kind: &jsonschema::error::TypeKind) -> String {
    let name = |t: &jsonschema::JsonType| match t.to_string().as_str() {
        "object" => "a mapping".to_string(),
        "array" => "a list".to_string(),
        "string" => "text".to_string(),
        "integer" => "a whole number".to_string(),
        other => format!("a {other}"),
    };
    match kind {
        jsonschema::error::TypeKind::Single(t) => name(t),
        jsonschema::error::TypeKind::Multiple(set) => {
            set.iter().map(|t| name(&t)).collect::<Vec<_>>().join(" or ")
        }
    }
}

fn list(names: &[String]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// The allowed name closest to a misspelt one, when it is close enough to be a typo.
fn closest<'a>(name: &str, allowed: &'a [String]) -> Option<&'a String> {
    allowed
        .iter()
        .map(|candidate| (strsim::levenshtein(name, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 4))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}
