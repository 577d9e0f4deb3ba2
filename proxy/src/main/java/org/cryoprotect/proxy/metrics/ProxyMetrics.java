package org.cryoprotect.proxy.metrics;

import java.util.Collection;
import java.util.function.LongSupplier;
import java.util.function.Supplier;

/**
 * Everything the proxy counts, as events. Call sites never see Prometheus: they call these methods
 * and {@link #NONE} ignores them, so code and tests that do not care about metrics pass {@code
 * NONE} (HikariCP's {@code IMetricsTracker} is the model). Label values are plain strings and
 * should come from small sets (database names, node addresses, reasons), never from SQL text.
 *
 * <p>Implementations must be thread-safe and cheap: the event methods are called on Netty event
 * loops and must never block.
 */
public interface ProxyMetrics {
  /** Ignores every event. */
  ProxyMetrics NONE = new ProxyMetrics() {};

  /** {@link #bytes} direction: bytes received from clients. */
  String IN = "in";

  /** {@link #bytes} direction: bytes sent to clients. */
  String OUT = "out";

  /** {@link #error} origin: an error the proxy raised itself. */
  String PROXY = "proxy";

  /** {@link #error} origin: an ErrorResponse forwarded from PostgreSQL. */
  String SERVER = "server";

  /** Route label values: where a query or transaction ran. */
  String PRIMARY = "primary";

  String REPLICA = "replica";

  /** {@link #breakerTransition} states. */
  String BREAKER_CLOSED = "closed";

  String BREAKER_HALF_OPEN = "half_open";

  String BREAKER_OPEN = "open";

  /** {@link #replay} reason: the server connection died before any reply reached the client. */
  String REPLAY_CONNECTION_LOST = "connection_lost";

  /**
   * {@link #replay} reason: a replica answered 25006 (read-only transaction); run on the primary.
   */
  String REPLAY_READ_ONLY = "read_only";

  /** {@link #tokenRejected} reason: a token on a non-TLS connection its policy refuses. */
  String TOKEN_PLAINTEXT = "plaintext";

  /**
   * Every reason a token is refused for (the verifier's reasons and {@link #TOKEN_PLAINTEXT}),
   * exported at zero so that a rate over them exists before the first refusal.
   */
  java.util.List<String> TOKEN_REJECT_REASONS =
      java.util.List.of(
          "expired",
          "not_yet_valid",
          "bad_signature",
          "bad_audience",
          "bad_issuer",
          "unknown_kid",
          "revoked",
          "unmapped_role",
          "malformed",
          "too_large",
          TOKEN_PLAINTEXT);

  default void clientLogin(String database, String user) {}

  /** A login refused; {@code reason} is a short word such as {@code password} or {@code user}. */
  default void clientLoginFailed(String reason) {}

  default void clientClosed(String database, String user) {}

  /** A token login passed verification; {@code cached}: answered from the verification cache. */
  default void tokenAccepted(boolean cached) {}

  /** A token refused, by reason: one of {@link #TOKEN_REJECT_REASONS}. */
  default void tokenRejected(String reason) {}

  /** The revocation list: ids known, and seconds since it was last read whole. */
  default void registerRevocations(LongSupplier size, java.util.function.DoubleSupplier age) {}

  /** The audit trail's figures, read at each scrape. */
  default void registerAudit(AuditFigures figures) {}

  /** A server connection handed to a client after waiting {@code nanosWaited} (0 if idle). */
  default void checkout(String database, String node, long nanosWaited) {}

  default void transaction(String database, String route, long nanos) {}

  default void query(String database, String route, long nanos) {}

  /** {@code direction} is {@link #IN} or {@link #OUT}. */
  default void bytes(String direction, long n) {}

  /**
   * An error sent to a client. {@code sqlstateClass} is the two-character class ({@code 08}, {@code
   * 42}); a full five-character SQLSTATE is cut to its class. {@code origin} is {@link #PROXY} or
   * {@link #SERVER}.
   */
  default void error(String sqlstateClass, String origin) {}

  /** A server connection pinned to one client (transaction mode), with the cause. */
  default void pin(String reason) {}

  /** A Parse actually sent to a server (not answered from the prepared-statement registry). */
  default void serverPrepare() {}

  default void preparedEviction() {}

  /**
   * Circuit breaker state change; states are {@link #BREAKER_CLOSED}, {@link #BREAKER_HALF_OPEN},
   * {@link #BREAKER_OPEN}.
   */
  default void breakerTransition(String node, String from, String to) {}

  default void retry(String node) {}

  /**
   * A statement replayed; {@code reason} is {@link #REPLAY_CONNECTION_LOST} or {@link
   * #REPLAY_READ_ONLY}.
   */
  default void replay(String reason) {}

  /** One health probe of {@code node}. */
  default void probe(String node, boolean ok) {}

  /**
   * Pool gauges ({@code cl_*}, {@code sv_*}, pool size, utilisation, max wait) are read from this
   * supplier at scrape time, on the admin HTTP thread. It replaces any earlier supplier and must be
   * safe to call from any thread.
   */
  default void registerPools(Supplier<? extends Collection<PoolStats>> pools) {}

  /** Node gauges (breaker state, replica lag, up), read at scrape time like the pools. */
  default void registerNodes(Supplier<? extends Collection<NodeStats>> nodes) {}

  /** Size of the prepared-statement registry, read at scrape time. */
  default void registerPreparedStatements(LongSupplier size) {}

  /** Result cache: a request answered from the cache. */
  default void cacheHit() {}

  /** Result cache: a cacheable request that went to the server. */
  default void cacheMiss() {}

  /** Result cache: a request not looked up, by reason (a small fixed set). */
  default void cacheBypass(String reason) {}

  /** Result cache: an entry removed by the size bound or its TTL. */
  default void cacheEviction(String cause) {}

  /** Result cache: an invalidation, by source (proxy_write, notify, admin, listener_lost). */
  default void cacheInvalidation(String source) {}

  /** Result cache: from a write's statement (its NOTIFY's timestamp) to its invalidation here. */
  default void cacheNotifyLag(long nanos) {}

  /** Result cache: entries and bytes, read at scrape time. */
  default void registerCache(LongSupplier entries, LongSupplier bytes) {}

  /**
   * A materialized-view refresh attempt ended: {@code result} refreshed, fresh (another instance
   * refreshed it lately), busy (another instance is refreshing it) or failed.
   */
  default void viewRefresh(String view, String result, long nanos) {}

  /** The refreshed views' ages and intervals, read at scrape time. */
  default void registerViews(Supplier<? extends Collection<ViewStats>> views) {}
}
