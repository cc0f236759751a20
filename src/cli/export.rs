//! `export`: a node's output as an ordinary folder, so a merged model goes straight to
//! another tool. Files are hard links to the store's blobs where the file system allows
//! (no copy of a 15 GB checkpoint), copies otherwise, each verified against its digest
//! as it is written (`Store::materialize`, docs/architecture.md §5).

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;

use super::inspect::{output_of, Pick};
use super::Globals;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The node (its latest result, or its result in `--run`)
    node: String,
    /// The folder to create (or an empty one)
    dir: PathBuf,
    #[command(flatten)]
    pick: Pick,
    /// Copy every file instead of hard-linking it (a folder to edit in place)
    #[arg(long)]
    copy: bool,
}

pub async fn export(globals: &Globals, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let store = args.pick.store(globals)?;
    let output = output_of(&store, &args.node, &args.pick).await?;
    let occupied = std::fs::read_dir(&args.dir)
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    if occupied {
        bail!(
            "`{}` is not empty: export writes into a new or empty folder",
            args.dir.display()
        );
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create `{}`", args.dir.display()))?;
    let tree = store
        .materialize(output, &args.dir)
        .await
        .with_context(|| format!("cannot export `{}` ({output})", args.node))?;
    let (mut linked, mut bytes) = (0usize, 0u64);
    for (name, entry) in tree.iter() {
        let path = args.dir.join(name);
        bytes += entry.size;
        if args.copy {
            // Replace the link by a private, writable copy of the verified bytes.
            let copy = PathBuf::from(format!("{}.peirce-copy", path.display()));
            std::fs::copy(&path, &copy)
                .and_then(|_| std::fs::rename(&copy, &path))
                .with_context(|| format!("cannot copy `{}`", path.display()))?;
            let mode = if entry.executable { 0o755 } else { 0o644 };
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .with_context(|| format!("cannot make `{}` writable", path.display()))?;
        } else if std::fs::metadata(&path).is_ok_and(|meta| meta.nlink() > 1) {
            linked += 1;
        }
    }
    let count = tree.iter().count();
    eprintln!(
        "exported `{}` ({output}) to {}: {count} files, {:.1} MB, verified; {}",
        args.node,
        args.dir.display(),
        bytes as f64 / 1e6,
        if args.copy {
            "copies".to_string()
        } else {
            format!(
                "{linked} hard links to the store (read-only: `--copy` for files to edit), {} copies",
                count - linked
            )
        }
    );
    Ok(ExitCode::SUCCESS)
}
