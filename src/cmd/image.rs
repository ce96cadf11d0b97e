//! `kubus image`: the node's image store from the command line (offline imports, listing,
//! pulls, removal, export), on the same store the node agent uses.

use anyhow::Context as _;
use kubus_image::{ImageStore, PullPolicy, Registries};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ImageArgs {
    /// The data dir of `kubus up` (the node's state is in its node/) or of `kubus node`; the
    /// images are under the node's images/.
    #[arg(long, global = true, default_value_os_t = crate::cmd::up::default_data_dir().join("node"))]
    pub data_dir: PathBuf,
    /// Registry mirrors and credentials (k3s registries.yaml format), for pulls.
    #[arg(long, global = true)]
    pub registries: Option<PathBuf>,
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum ImageCommand {
    /// Import images from an OCI archive or a docker-save tarball.
    Import { files: Vec<PathBuf> },
    /// List the images on this node.
    Ls,
    /// Pull an image from its registry (or a configured mirror).
    Pull { image: String },
    /// Remove an image (its layers go once no other image uses them).
    Rm { images: Vec<String> },
    /// Write an image into an OCI image layout directory (created or extended), tagged with
    /// the image's tag, e.g. for `skopeo copy oci:DIR:TAG docker://REGISTRY/NAME:TAG`.
    Export { image: String, dir: PathBuf },
}

pub async fn run(args: ImageArgs) -> anyhow::Result<()> {
    let registries = match &args.registries {
        Some(p) => Registries::load(p).with_context(|| format!("reading {}", p.display()))?,
        None => Registries::default(),
    };
    let state = kubus_kubelet::reset::StateDir::find(&args.data_dir);
    let store = ImageStore::open(state.path().join("images"), registries).context("opening the image store")?;
    match args.command {
        ImageCommand::Import { files } => {
            for f in files {
                let names = store.import(&f).with_context(|| format!("importing {}", f.display()))?;
                for n in names {
                    println!("imported {n}");
                }
            }
        }
        ImageCommand::Ls => {
            println!("{:<60} {:<20} {:>10}", "IMAGE", "ID", "SIZE");
            for i in store.list() {
                let id = i.id.trim_start_matches("sha256:").chars().take(12).collect::<String>();
                for n in &i.names {
                    println!("{n:<60} {id:<20} {:>10}", human(i.size));
                }
            }
        }
        ImageCommand::Pull { image } => {
            let p = store.ensure(&image, PullPolicy::Always).await.with_context(|| format!("pulling {image}"))?;
            println!("{} {}", p.image.names.first().cloned().unwrap_or(image), p.image.id);
        }
        ImageCommand::Rm { images } => {
            for i in images {
                store.remove(&i).with_context(|| format!("removing {i}"))?;
                println!("removed {i}");
            }
        }
        ImageCommand::Export { image, dir } => {
            store.export_oci_layout(&image, &dir).with_context(|| format!("exporting {image}"))?;
            println!("exported {image} to {}", dir.display());
        }
    }
    Ok(())
}

fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB"];
    let (mut v, mut u) = (bytes as f64, 0);
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1}{}", units[u])
}
