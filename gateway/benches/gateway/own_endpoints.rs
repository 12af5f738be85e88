//! The login runs' client endpoints: one per connection, as game clients have.

use super::*;

/// Login runs connect the way game clients do: each connection on an endpoint
/// (UDP socket) of its own with the SDK's endpoint settings
/// (`outpost_client::quic_endpoint_config`: zero-length client connection ids),
/// unless `OUTPOST_BENCH_CLIENT_CIDS=default` (quinn's 8-byte ids). Endpoints are
/// pooled and reused once their last connection has drained, so a login costs
/// the load generator about what it costs on the shared endpoint.
/// `OUTPOST_BENCH_LOGIN_ENDPOINTS=shared` runs logins on the one shared endpoint
/// instead (the bench's behaviour before session 7; quinn's default ids, since a
/// zero-length-id endpoint can hold one connection per server address only).
pub(super) struct OwnEndpoints {
    pub(super) zero_length_cids: bool,
    pub(super) cc: quinn::ClientConfig,
    pub(super) idle: std::sync::Mutex<std::collections::VecDeque<quinn::Endpoint>>,
}

/// An endpoint of [`OwnEndpoints`] in use; back to the pool when dropped.
pub(super) struct Lease<'a> {
    pool: &'a OwnEndpoints,
    pub(super) endpoint: Option<quinn::Endpoint>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(e) = self.endpoint.take() {
            self.pool.idle.lock().expect("pool lock").push_back(e);
        }
    }
}

impl OwnEndpoints {
    /// An endpoint with no connection left (none live, none draining), or a new one.
    pub(super) fn lease(&self) -> Result<Lease<'_>> {
        // The endpoint returned first has had the longest to drain.
        let reused = {
            // Any drained endpoint, not only the oldest: when the oldest is
            // still draining (a slow server: under a profiler, connections
            // take longer to close), looking at it alone made a new endpoint
            // per login while hundreds of others sat drained, and the pool
            // grew until the load generator ran out of memory (24 GB).
            let mut idle = self.idle.lock().expect("pool lock");
            idle.iter()
                .position(|e| e.open_connections() == 0)
                .and_then(|i| idle.remove(i))
        };
        let endpoint = match reused {
            Some(e) => e,
            None => {
                let config = if self.zero_length_cids {
                    outpost_client::quic_endpoint_config()
                } else {
                    quinn::EndpointConfig::default()
                };
                let (socket, _) = outpost_gateway::endpoint::bind_udp(&client_socket_config()?)?;
                let mut e = quinn::Endpoint::new(config, None, socket, Arc::new(quinn::TokioRuntime))?;
                e.set_default_client_config(self.cc.clone());
                e
            }
        };
        Ok(Lease {
            pool: self,
            endpoint: Some(endpoint),
        })
    }
}

/// The client's socket sizing: the servers' (the client sees the same bursts).
pub(super) fn client_socket_config() -> Result<GatewayConfig> {
    Ok(GatewayConfig {
        listen: "127.0.0.1:0".parse()?,
        ..GatewayConfig::default()
    })
}
