package org.cryoprotect.proxy.frontend;

import io.netty.channel.group.ChannelGroup;
import io.netty.handler.ssl.SslContext;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicInteger;
import org.cryoprotect.proxy.audit.Audit;
import org.cryoprotect.proxy.backend.ServerConnector;
import org.cryoprotect.proxy.cache.ResultCache;
import org.cryoprotect.proxy.config.ProxyConfig;
import org.cryoprotect.proxy.metrics.ProxyMetrics;
import org.cryoprotect.proxy.pool.Pools;

/**
 * What every client handler shares: TLS, the way to servers, the cancel keys, the secrets, the
 * pools (which hold the current configuration), the admin actions and the result cache. One
 * instance per running proxy; {@code tls} is null when client TLS is off.
 */
public record Frontend(
    SslContext tls,
    ServerConnector connector,
    CancelRegistry cancels,
    ClientSecrets secrets,
    Pools pools,
    ProxyMetrics metrics,
    ChannelGroup clients,
    AtomicInteger loggedIn,
    AdminActions admin,
    Audit audit,
    ResultCache cache) {

  /** The configuration now in force: RELOAD replaces it. */
  public ProxyConfig config() {
    return pools.config();
  }

  /** What the admin console may do to the whole proxy. */
  public interface AdminActions {
    /**
     * Re-reads the configuration file off the event loops (it reads a file and may close pools of
     * JDBC connections); completes with what was applied, or with why not.
     */
    CompletableFuture<String> reload();

    void shutdown();
  }
}
