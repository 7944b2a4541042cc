//! Rendering with the ecosystem's own tools: `kubectl kustomize` for the overlays under
//! `manifests/` and `helm template` for the chart under `charts/`. Their output, parsed into
//! [`Document`]s, is what every check reads, so what is checked is what `kubectl apply -k` and
//! `helm install` would apply.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::yaml::{parse_documents, Document, YamlError};

/// Where `scripts/deps.sh` installs the pinned tools, relative to the repository root.
pub const TOOLS_DIR: &str = "target/tools/bin";

/// Errors finding or running a rendering tool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The tool is nowhere to be found.
    #[error("`{tool}` was not found (looked at ${env}, {tools_dir}/{tool} and PATH): run `make deps`, which installs it")]
    Missing {
        /// The tool's name.
        tool: String,
        /// The environment variable that may name it.
        env: String,
        /// The project's tool folder that was looked in.
        tools_dir: String,
    },
    /// The tool could not be started.
    #[error("`{command}` could not be started: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The tool ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The tool's output is not YAML.
    #[error(transparent)]
    Yaml(#[from] YamlError),
}

/// An external tool, found once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    path: PathBuf,
}

impl Tool {
    /// Finds `name`: the path in environment variable `env` when set, else
    /// `<root>/target/tools/bin/<name>` (where `make deps` puts the pinned tools), else `PATH`.
    ///
    /// # Errors
    /// [`RenderError::Missing`] naming the tool and how to install it; also when `env` names a
    /// file that does not exist (no silent fallback to another version).
    pub fn find(name: &str, env: &str, root: &Path) -> Result<Self, RenderError> {
        let missing = || RenderError::Missing {
            tool: name.to_owned(),
            env: env.to_owned(),
            tools_dir: TOOLS_DIR.to_owned(),
        };
        if let Some(path) = std::env::var_os(env).filter(|v| !v.is_empty()) {
            let path = PathBuf::from(path);
            return if path.is_file() {
                Ok(Self { path })
            } else {
                Err(missing())
            };
        }
        let pinned = root.join(TOOLS_DIR).join(name);
        let on_path = || {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        };
        pinned
            .is_file()
            .then_some(pinned)
            .or_else(on_path)
            .map(|path| Self { path })
            .ok_or_else(missing)
    }

    /// `kubectl`, from `BOIFI_KUBECTL`, the project's tools or `PATH`.
    ///
    /// # Errors
    /// [`RenderError::Missing`].
    pub fn kubectl(root: &Path) -> Result<Self, RenderError> {
        Self::find("kubectl", "BOIFI_KUBECTL", root)
    }

    /// `helm`, from `BOIFI_HELM`, the project's tools or `PATH`.
    ///
    /// # Errors
    /// [`RenderError::Missing`].
    pub fn helm(root: &Path) -> Result<Self, RenderError> {
        Self::find("helm", "BOIFI_HELM", root)
    }

    /// The executable.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs the tool with `args` and returns its stdout.
    ///
    /// # Errors
    /// [`RenderError::Spawn`] or [`RenderError::Failed`] with the command line and its stderr.
    pub fn run<I, S>(&self, args: I) -> Result<String, RenderError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let command = std::iter::once(self.path.as_os_str())
            .chain(args.iter().map(OsString::as_os_str))
            .map(|part| part.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let output = Command::new(&self.path)
            .args(&args)
            // helm keeps caches and a config under $HOME; none of it is wanted here.
            .env(
                "HELM_CACHE_HOME",
                std::env::temp_dir().join("boifi-helm-cache"),
            )
            .output()
            .map_err(|source| RenderError::Spawn {
                command: command.clone(),
                source,
            })?;
        if !output.status.success() {
            return Err(RenderError::Failed {
                command,
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// The documents `kubectl kustomize <dir>` renders.
///
/// # Errors
/// When kubectl fails (its message is kept) or prints something that is not YAML.
pub fn kustomize(kubectl: &Tool, dir: &Path) -> Result<Vec<Document>, RenderError> {
    let text = kubectl.run([OsString::from("kustomize"), dir.as_os_str().to_owned()])?;
    Ok(parse_documents(
        &text,
        &format!("kustomize {}", dir.display()),
    )?)
}

/// A `helm template` invocation: the chart, the release, and the values files and
/// `--set` pairs in the order helm applies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmRelease {
    /// The chart directory.
    pub chart: PathBuf,
    /// The release name.
    pub name: String,
    /// The release namespace.
    pub namespace: String,
    /// `--values` files.
    pub values: Vec<PathBuf>,
    /// `--set key=value` pairs.
    pub set: Vec<String>,
}

impl HelmRelease {
    /// The release `name` of `chart` into `namespace`, with the chart's defaults.
    #[must_use]
    pub fn new(chart: &Path, name: &str, namespace: &str) -> Self {
        Self {
            chart: chart.to_path_buf(),
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            values: Vec::new(),
            set: Vec::new(),
        }
    }

    fn value_args(&self) -> Vec<OsString> {
        let mut args = Vec::new();
        for file in &self.values {
            args.push(OsString::from("--values"));
            args.push(file.as_os_str().to_owned());
        }
        for pair in &self.set {
            args.push(OsString::from("--set"));
            args.push(OsString::from(pair));
        }
        args
    }

    /// The documents `helm template` renders (values are checked against the chart's
    /// `values.schema.json` by helm itself).
    ///
    /// # Errors
    /// When helm fails (its message is kept) or prints something that is not YAML.
    pub fn template(&self, helm: &Tool) -> Result<Vec<Document>, RenderError> {
        let mut args: Vec<OsString> = vec![
            "template".into(),
            self.name.clone().into(),
            self.chart.as_os_str().to_owned(),
            "--namespace".into(),
            self.namespace.clone().into(),
        ];
        args.extend(self.value_args());
        let text = helm.run(args)?;
        let origin = format!("helm template {} {}", self.name, self.chart.display());
        Ok(parse_documents(&text, &origin)?)
    }

    /// `helm lint --strict` with these values; returns its report.
    ///
    /// # Errors
    /// When the chart has a lint error or warning (`--strict`), with helm's report.
    pub fn lint(&self, helm: &Tool) -> Result<String, RenderError> {
        let mut args: Vec<OsString> = vec![
            "lint".into(),
            "--strict".into(),
            self.chart.as_os_str().to_owned(),
            "--namespace".into(),
            self.namespace.clone().into(),
        ];
        args.extend(self.value_args());
        helm.run(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_names_itself_and_the_way_to_install_it() {
        let err = Tool::find(
            "boifi-no-such-tool",
            "BOIFI_NO_SUCH_TOOL",
            Path::new("/nonexistent"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`boifi-no-such-tool` was not found (looked at $BOIFI_NO_SUCH_TOOL, \
             target/tools/bin/boifi-no-such-tool and PATH): run `make deps`, which installs it"
        );
    }

    #[test]
    fn a_failing_tool_keeps_its_message() {
        let sh = Tool::find("sh", "BOIFI_NO_SUCH_TOOL", Path::new("/nonexistent")).unwrap();
        let err = sh.run(["-c", "echo broken >&2; exit 3"]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("failed") && text.ends_with(": broken"),
            "{text}"
        );
    }
}
