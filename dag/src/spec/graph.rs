//! Ordering of nodes: cycle detection and a deterministic topological order.
//!
//! Nodes are indices in file order; edges point from an input to its consumer.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, VecDeque};

use petgraph::graph::{DiGraph, NodeIndex};

/// Nodes in topological order, ties broken by file order, or every cycle (one per
/// strongly connected component) as node indices in data-flow order, starting at
/// the cycle's earliest node in the file. `inputs[i]` lists the nodes node `i` reads.
/// Self-loops are ignored here; the loader reports them on their own.
pub(crate) fn topological_order(inputs: &[BTreeSet<usize>]) -> Result<Vec<usize>, Vec<Vec<usize>>> {
    let count = inputs.len();
    let mut consumers: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); count];
    for (node, node_inputs) in inputs.iter().enumerate() {
        for &input in node_inputs {
            if input != node && input < count {
                consumers[input].insert(node);
            }
        }
    }

    let cycles = find_cycles(&consumers);
    if !cycles.is_empty() {
        return Err(cycles);
    }

    let mut waiting = vec![0usize; count];
    for node_consumers in &consumers {
        for &consumer in node_consumers {
            waiting[consumer] += 1;
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..count)
        .filter(|&node| waiting[node] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(count);
    while let Some(Reverse(node)) = ready.pop() {
        order.push(node);
        for &consumer in &consumers[node] {
            waiting[consumer] -= 1;
            if waiting[consumer] == 0 {
                ready.push(Reverse(consumer));
            }
        }
    }
    Ok(order)
}

fn find_cycles(consumers: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    let mut graph = DiGraph::<usize, ()>::with_capacity(consumers.len(), 0);
    let indices: Vec<NodeIndex> = (0..consumers.len())
        .map(|node| graph.add_node(node))
        .collect();
    for (node, node_consumers) in consumers.iter().enumerate() {
        for &consumer in node_consumers {
            graph.add_edge(indices[node], indices[consumer], ());
        }
    }
    let mut cycles: Vec<Vec<usize>> = petgraph::algo::tarjan_scc(&graph)
        .into_iter()
        .filter(|component| component.len() > 1)
        .filter_map(|component| {
            let members: BTreeSet<usize> = component.iter().map(|index| graph[*index]).collect();
            shortest_cycle(consumers, &members)
        })
        .collect();
    cycles.sort();
    cycles
}

/// The shortest cycle through the earliest member, staying inside the component.
fn shortest_cycle(consumers: &[BTreeSet<usize>], members: &BTreeSet<usize>) -> Option<Vec<usize>> {
    let start = *members.first()?;
    let mut previous = vec![None; consumers.len()];
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for &next in &consumers[node] {
            if !members.contains(&next) {
                continue;
            }
            if next == start {
                let mut cycle = vec![node];
                let mut current = node;
                while let Some(before) = previous[current] {
                    cycle.push(before);
                    current = before;
                }
                cycle.reverse();
                return Some(cycle);
            }
            if previous[next].is_none() {
                previous[next] = Some(node);
                queue.push_back(next);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(edges: &[&[usize]]) -> Vec<BTreeSet<usize>> {
        edges.iter().map(|e| e.iter().copied().collect()).collect()
    }

    #[test]
    fn order_is_topological_with_file_order_ties() {
        // 0 reads 2, 1 reads nothing, 2 reads nothing, 3 reads 0 and 1.
        let order = topological_order(&inputs(&[&[2], &[], &[], &[0, 1]])).unwrap();
        assert_eq!(order, vec![1, 2, 0, 3]);
    }

    #[test]
    fn cycles_start_at_earliest_node() {
        // 0 reads 2, 2 reads 1, 1 reads 0: data flows 0 -> 1 -> 2 -> 0.
        let cycles = topological_order(&inputs(&[&[2], &[0], &[1], &[]])).unwrap_err();
        assert_eq!(cycles, vec![vec![0, 1, 2]]);
        // Two separate cycles are both reported.
        let cycles = topological_order(&inputs(&[&[1], &[0], &[3], &[2]])).unwrap_err();
        assert_eq!(cycles, vec![vec![0, 1], vec![2, 3]]);
    }

    #[test]
    fn self_loops_are_left_to_the_caller() {
        assert_eq!(topological_order(&inputs(&[&[0]])).unwrap(), vec![0]);
    }
}
