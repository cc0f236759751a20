//! Lineage: from an artifact back to the nodes and inputs that made it.

use peirce_store::{ActionKey, ActionRecord, BlobDigest, Store, TreeDigest};
use serde::Serialize;

/// How one artifact came to be.
#[derive(Debug, Clone, Serialize)]
pub struct Lineage {
    /// The artifact (a node's output tree, or an external input's tree).
    pub tree: TreeDigest,
    /// The action that produced it; `None` for external inputs or unknown trees.
    pub producer: Option<ActionRecord>,
    /// The lineage of each input of the producer, by input name.
    pub inputs: Vec<(String, Lineage)>,
}

/// The lineage of `tree`, following producers up to `max_depth` levels.
pub async fn lineage(
    store: &Store,
    tree: TreeDigest,
    max_depth: usize,
) -> peirce_store::Result<Lineage> {
    build(store, tree, max_depth).await
}

fn build(
    store: &Store,
    tree: TreeDigest,
    depth: usize,
) -> futures::future::BoxFuture<'_, peirce_store::Result<Lineage>> {
    Box::pin(async move {
        let producer = match store.producer_of(tree).await? {
            Some(key) => store.get_action(key).await?,
            None => None,
        };
        let mut inputs = Vec::new();
        if let (Some(record), true) = (&producer, depth > 0) {
            for (name, input) in &record.components.inputs {
                inputs.push((name.clone(), build(store, *input, depth - 1).await?));
            }
        }
        Ok(Lineage {
            tree,
            producer,
            inputs,
        })
    })
}

/// Action records whose output tree contains `blob`, with the file's name in that tree.
pub async fn trees_containing(
    store: &Store,
    blob: BlobDigest,
) -> peirce_store::Result<Vec<(ActionKey, String)>> {
    let mut found = Vec::new();
    for key in store.list_actions().await? {
        let Ok(Some(record)) = store.get_action(key).await else {
            continue;
        };
        if record.log == Some(blob) {
            found.push((key, "(log)".to_string()));
        }
        let Ok(tree) = store.get_tree(record.output).await else {
            continue;
        };
        for (name, entry) in tree.iter() {
            if entry.digest == blob {
                found.push((key, name.to_string()));
            }
        }
    }
    Ok(found)
}
