//! Merging many updates into one, in linear time.

/// Updates merged per call of `yrs::merge_updates_v1` by [`merge_in_rounds`].
const MERGE_FAN_IN: usize = 16;

/// Merges `updates` into one, at most [`MERGE_FAN_IN`] at a time. yrs re-sorts all its inputs
/// after every block it writes, so one call over a batch of n one-block updates costs about n²
/// comparisons (half of the actor's CPU at 1,000 updates per batch); rounds of 16 keep that
/// linear for the price of decoding each byte about log16(n) times.
pub(super) fn merge_in_rounds<B: AsRef<[u8]>>(
    updates: &[B],
) -> Result<Vec<u8>, yrs::encoding::read::Error> {
    if updates.len() <= MERGE_FAN_IN {
        return yrs::merge_updates_v1(updates);
    }
    let merged = updates
        .chunks(MERGE_FAN_IN)
        .map(yrs::merge_updates_v1)
        .collect::<Result<Vec<_>, _>>()?;
    merge_in_rounds(&merged)
}
