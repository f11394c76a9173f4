//! Data parallelism for inference on the CPU. burn's CPU backend runs one
//! operation at a time and parallelises inside it, which leaves cores idle
//! on the small matrices of a small model (measured: 1.1 of 2 cores busy).
//! Generating independent batches on one thread per core keeps every core
//! busy.
//!
//! Only for models on a non-autodiff backend: burn 0.21's autodiff graph
//! deadlocks when one thread records a forward pass while another runs
//! backward (lock-order inversion between `GraphLocator::select` and
//! `GraphCleaner::init`, observed in a data-parallel SFT step), so training
//! stays on one thread.

/// Worker threads: one per available core.
pub fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `items` split into at most `parts` contiguous runs of near-equal size.
pub fn split<T: Clone>(items: &[T], parts: usize) -> Vec<Vec<T>> {
    let parts = parts.clamp(1, items.len().max(1));
    let size = items.len().div_ceil(parts).max(1);
    items.chunks(size).map(<[T]>::to_vec).collect()
}

/// `f` applied to every part on its own thread; results in order.
pub fn map_parts<T: Sync, R: Send>(parts: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if parts.len() <= 1 {
        return parts.iter().map(&f).collect();
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .iter()
            .map(|p| {
                let f = &f;
                scope.spawn(move || f(p))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker thread panicked"))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_every_item_once_in_order() {
        let items: Vec<usize> = (0..10).collect();
        let parts = split(&items, 3);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.concat(), items);
        assert_eq!(split(&items[..1], 4), vec![vec![0]]);
        assert_eq!(map_parts(&parts, |p| p.len()), vec![4, 4, 2]);
    }
}
