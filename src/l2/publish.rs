//! The control path: the bus publishes its invalidations, heartbeats and pings through
//! [`L2::publish_batch`], guarded by the control breaker (so slow data calls never hold back
//! an invalidation). The command, `PUBLISH` or `SPUBLISH`, is the topology's choice.

use super::{topology, L2Error, L2};

impl L2 {
    /// Publishes several payloads, in order, in one pipelined round trip (the bus coalesces
    /// the invalidations queued while the previous batch was in flight); returns how many
    /// subscribers received each. One result for the batch: if Redis did not take all of
    /// them, none counts as sent, so no change is acknowledged on an unsent invalidation.
    /// In a Redis Cluster the commands are `SPUBLISH` (every bus channel shares one hash
    /// tag, so the pipeline goes to one shard; see [`topology`]).
    pub async fn publish_batch(&self, messages: &[(&str, &[u8])]) -> Result<Vec<u64>, L2Error> {
        let owned: Vec<(String, Vec<u8>)> = messages
            .iter()
            .map(|(channel, payload)| (channel.to_string(), payload.to_vec()))
            .collect();
        let n = messages.len();
        let counts: Vec<i64> = self
            .call_with(&self.control, |mut c| async move {
                let command = topology::publish_command(&c);
                let mut pipe = redis::pipe();
                for (channel, payload) in &owned {
                    pipe.cmd(command).arg(channel).arg(payload);
                }
                pipe.query_async::<Vec<i64>>(&mut c).await
            })
            .await?;
        if counts.len() != n {
            return Err(L2Error::Protocol(format!(
                "{} replies to {n} pipelined PUBLISH",
                counts.len()
            )));
        }
        Ok(counts.into_iter().map(|c| c.max(0) as u64).collect())
    }
}
