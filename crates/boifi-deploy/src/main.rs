//! `boifi-deploy`: writes the filter's Wasm OCI image layout, pins its digests into the
//! manifests, and checks what `kubectl kustomize` and `helm template` render, offline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use boifi_deploy::check::Checker;
use boifi_deploy::consistency::BundleScope;
use boifi_deploy::crd;
use boifi_deploy::error::DeployError;
use boifi_deploy::oci::{verify_layout, write_layout, Artifact, ArtifactOptions};
use boifi_deploy::pin;
use boifi_deploy::render::{self, HelmRelease, Tool};
use boifi_deploy::yaml::{load_file, ResourceId};
use clap::{Parser, Subcommand};

/// Deploy tooling for boifi: the Wasm OCI artifact and the offline manifest checker.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the filter as an OCI image layout (oci-layout, index.json, blobs/sha256/...).
    Oci {
        /// The built filter module.
        #[arg(long, env = "BOIFI_WASM")]
        wasm: PathBuf,
        /// The layout directory to write (replaced if it already holds a layout).
        #[arg(long, default_value = "dist/oci")]
        out: PathBuf,
        /// The tag recorded in index.json.
        #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
        tag: String,
    },
    /// Verify an OCI image layout; with --wasm, also that its layer is that module.
    VerifyOci {
        /// The layout directory.
        layout: PathBuf,
        /// The module the layer must equal.
        #[arg(long)]
        wasm: Option<PathBuf>,
    },
    /// Write a verified layout's digests into the marked lines of the manifests.
    Pin {
        /// The layout directory.
        #[arg(long, default_value = "dist/oci")]
        layout: PathBuf,
        /// The manifests tree.
        #[arg(long, default_value = "manifests")]
        manifests: PathBuf,
    },
    /// Derive the checker's JSON schema of a custom resource from its CRD (see `crd.rs`).
    CrdSchema {
        /// The CustomResourceDefinition (YAML, one document).
        #[arg(long)]
        crd: PathBuf,
        /// The version whose schema to derive.
        #[arg(long)]
        version: String,
        /// The JSON schema file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Render kustomization directories (`kubectl kustomize`) or Helm charts (`helm template`)
    /// and check the output against the schemas and rules.
    Check {
        /// The k8s-schemas folder.
        #[arg(
            long,
            env = "BOIFI_K8S_SCHEMAS",
            default_value = "testdata/k8s-schemas"
        )]
        schemas: PathBuf,
        /// Treat each bundle as complete (every referenced Secret, ServiceAccount, Namespace
        /// must be in it).
        #[arg(long)]
        complete: bool,
        /// A resource created by hand, exempt from --complete (`Kind/namespace/name`).
        #[arg(long = "external")]
        external: Vec<ResourceId>,
        /// Values files for the charts among the directories (`helm template --values`).
        #[arg(long = "values")]
        values: Vec<PathBuf>,
        /// The namespace a chart is rendered into.
        #[arg(long, default_value = "boifi")]
        namespace: String,
        /// Kustomization directories and chart directories (those holding a Chart.yaml).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
}

fn print_artifact(artifact: &Artifact) {
    println!("tag              {}", artifact.tag);
    println!(
        "manifest digest  {} ({} bytes)",
        artifact.manifest_digest, artifact.manifest_size
    );
    println!(
        "wasm digest      {} ({} bytes)",
        artifact.wasm_digest, artifact.wasm_size
    );
    println!(
        "config digest    {} ({} bytes)",
        artifact.config_digest, artifact.config_size
    );
    println!("total blob bytes {}", artifact.total_blob_bytes);
    println!(
        "WasmPlugin sha256 for oci:// urls:   {}",
        artifact.manifest_sha256()
    );
    println!(
        "WasmPlugin sha256 for http(s):// urls: {}",
        artifact.wasm_sha256()
    );
}

fn run(cli: Cli) -> Result<bool, DeployError> {
    match cli.command {
        Command::Oci { wasm, out, tag } => {
            let bytes = std::fs::read(&wasm).map_err(|e| DeployError::read_wasm(&wasm, e))?;
            let options = ArtifactOptions {
                tag,
                ..ArtifactOptions::default()
            };
            let written = write_layout(&out, &bytes, &options)?;
            let verified = verify_layout(&out)?;
            if verified.artifact != written || verified.wasm != bytes {
                return Err(DeployError::ReadBackDiffers { layout: out });
            }
            println!("wrote OCI image layout {}", out.display());
            print_artifact(&written);
            Ok(true)
        }
        Command::VerifyOci { layout, wasm } => {
            let verified = verify_layout(&layout)?;
            if let Some(wasm) = wasm {
                let bytes = std::fs::read(&wasm).map_err(|e| DeployError::read_wasm(&wasm, e))?;
                if bytes != verified.wasm {
                    eprintln!(
                        "{}: the Wasm layer is not `{}`",
                        layout.display(),
                        wasm.display()
                    );
                    return Ok(false);
                }
            }
            println!("{}: valid", layout.display());
            print_artifact(&verified.artifact);
            Ok(true)
        }
        Command::Pin { layout, manifests } => {
            let verified = verify_layout(&layout)?;
            for line in pin::pin_tree(&manifests, &verified.artifact)? {
                let state = if line.changed { "pinned" } else { "unchanged" };
                println!(
                    "{state} {}:{} {}",
                    line.path.display(),
                    line.line,
                    line.digest
                );
            }
            Ok(true)
        }
        Command::CrdSchema { crd, version, out } => {
            let failed = |reason: String| DeployError::Crd {
                path: crd.clone(),
                reason,
            };
            let docs = load_file(&crd).map_err(|e| failed(e.to_string()))?;
            let [doc] = docs.as_slice() else {
                return Err(failed(format!("holds {} documents, not one", docs.len())));
            };
            let schema =
                crd::json_schema(&doc.value, &version).map_err(|e| failed(e.to_string()))?;
            let mut text =
                serde_json::to_string_pretty(&schema).map_err(|e| failed(e.to_string()))?;
            text.push('\n');
            std::fs::write(&out, text).map_err(|source| DeployError::WriteSchema {
                path: out.clone(),
                source,
            })?;
            println!("wrote {}", out.display());
            Ok(true)
        }
        Command::Check {
            schemas,
            complete,
            external,
            values,
            namespace,
            dirs,
        } => {
            let scope = BundleScope { complete, external };
            let mut checker = Checker::new(&schemas);
            let mut clean = true;
            let root = Path::new(".");
            for dir in dirs {
                let docs = if dir.join("Chart.yaml").is_file() {
                    let release = HelmRelease {
                        values: values.clone(),
                        ..HelmRelease::new(&dir, "boifi", &namespace)
                    };
                    release.template(&Tool::helm(root)?)?
                } else {
                    render::kustomize(&Tool::kubectl(root)?, &dir)?
                };
                let problems = checker.check_bundle(&docs, &scope);
                for problem in &problems {
                    eprintln!("{problem}");
                }
                println!(
                    "{}: {} documents, {} problems",
                    dir.display(),
                    docs.len(),
                    problems.len()
                );
                clean &= problems.is_empty();
            }
            Ok(clean)
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("boifi-deploy: {err}");
            ExitCode::FAILURE
        }
    }
}
