package org.cryoprotect.proxy.metrics;

import io.prometheus.metrics.core.datapoints.CounterDataPoint;
import io.prometheus.metrics.core.datapoints.DistributionDataPoint;
import io.prometheus.metrics.core.metrics.Counter;
import io.prometheus.metrics.core.metrics.GaugeWithCallback;
import io.prometheus.metrics.core.metrics.Histogram;
import io.prometheus.metrics.core.metrics.Info;
import io.prometheus.metrics.instrumentation.jvm.JvmMetrics;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import io.prometheus.metrics.model.snapshots.Unit;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.LongSupplier;
import java.util.function.Supplier;
import org.cryoprotect.proxy.cli.StderrAppender;

/**
 * {@link ProxyMetrics} on the Prometheus Java client. Each instance has its own {@link
 * PrometheusRegistry} (never the client's static default), so several proxies, or tests, can live
 * in one JVM. Counters and histograms are updated on the event; pool, node and prepared-statement
 * gauges are computed when scraped.
 *
 * <p>Names follow PgBouncer where it has one ({@code cl_active}, {@code sv_idle}, {@code maxwait});
 * the Prometheus client appends {@code _total} to counters and {@code _bucket}/{@code _sum}/{@code
 * _count} to histograms itself.
 */
public final class PrometheusMetrics implements ProxyMetrics {
  /** Connection acquisition: an idle connection takes microseconds, a new one milliseconds. */
  static final double[] ACQUIRE_BUCKETS = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10
  };

  /** Queries and transactions: the same scale, continued to a minute for reports and batches. */
  static final double[] DURATION_BUCKETS = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
    30, 60
  };

  /**
   * Every state change a node's circuit breaker can make (DESIGN §4: closed, open, half-open; no
   * forced or disabled states), as {@code {from, to}} in {@link #breakerTransition}'s vocabulary.
   */
  static final List<List<String>> BREAKER_TRANSITIONS =
      List.of(
          List.of(BREAKER_CLOSED, BREAKER_OPEN),
          List.of(BREAKER_OPEN, BREAKER_HALF_OPEN),
          List.of(BREAKER_HALF_OPEN, BREAKER_CLOSED),
          List.of(BREAKER_HALF_OPEN, BREAKER_OPEN));

  /** Why a statement is replayed (DESIGN §4 and §5); {@link #replay} takes one of these. */
  static final List<String> REPLAY_REASONS = List.of(REPLAY_CONNECTION_LOST, REPLAY_READ_ONLY);

  private final PrometheusRegistry registry = new PrometheusRegistry();
  private final ScrapeTimeGauges gauges = new ScrapeTimeGauges();
  private volatile LongSupplier preparedStatements = () -> 0;

  private final Counter logins;
  private final Counter disconnects;
  private final Counter authFailures;
  private final Counter tokensAccepted;
  private final Counter tokensRejected;
  private final Counter tokenCacheHits;
  private volatile LongSupplier revokedTokens = () -> 0;
  private volatile java.util.function.DoubleSupplier revocationAge = () -> 0;

  private volatile AuditFigures audit = AuditFigures.NONE; // zero until an audit trail registers
  private final CounterDataPoint bytesIn;
  private final CounterDataPoint bytesOut;
  private final Counter errors;
  private final Counter pins;
  private final Counter serverPrepares;
  private final Counter preparedEvictions;
  private final Counter breakerTransitions;
  private final Counter retries;
  private final Counter replays;
  private final Counter probes;
  private final CounterDataPoint cacheHits;
  private final CounterDataPoint cacheMisses;
  private final Counter cacheBypasses;
  private final Counter cacheEvictions;
  private final Counter cacheInvalidations;
  private final Histogram cacheNotifyLag;
  private volatile LongSupplier cacheEntries = () -> 0;
  private volatile LongSupplier cacheBytes = () -> 0;
  private final Counter viewRefreshes;
  private final Histogram viewRefreshSeconds;
  private volatile Supplier<? extends Collection<ViewStats>> views = List::of;
  private final PointsByLabels acquire;
  private final PointsByLabels queries;
  private final PointsByLabels transactions;

  /** {@code version} becomes {@code cryoproxy_build_info{version}}. */
  public PrometheusMetrics(String version) {
    logins = counter("cryoproxy_client_logins_total", "Client logins that succeeded", "database");
    disconnects =
        counter(
            "cryoproxy_client_disconnects_total",
            "Logged-in clients that disconnected",
            "database");
    authFailures =
        counter("cryoproxy_auth_failures_total", "Client logins refused, by reason", "reason");
    tokensAccepted =
        counter("cryoproxy_tokens_accepted_total", "JWT logins whose token was accepted");
    tokensRejected =
        counter("cryoproxy_tokens_rejected_total", "JWT logins refused, by reason", "reason");
    TOKEN_REJECT_REASONS.forEach(reason -> tokensRejected.labelValues(reason));
    tokenCacheHits =
        counter(
            "cryoproxy_token_cache_hits_total",
            "Accepted tokens answered from the verification cache (no signature check)");
    GaugeWithCallback.builder()
        .name("cryoproxy_revoked_tokens")
        .help("Token ids in the revocation list (auth.revoked_tokens)")
        .callback(callback -> callback.call(revokedTokens.getAsLong()))
        .register(registry);
    GaugeWithCallback.builder()
        .name("cryoproxy_revocation_list_age_seconds")
        .help("Seconds since the revocation list was last read whole from every source")
        .callback(callback -> callback.call(revocationAge.getAsDouble()))
        .register(registry);
    io.prometheus.metrics.core.metrics.CounterWithCallback.builder()
        .name("cryoproxy_log_lines_dropped_total")
        .help("Log lines dropped because too many were waiting to be written to stderr")
        .callback(callback -> callback.call(StderrAppender.dropped()))
        .register(registry);
    io.prometheus.metrics.core.metrics.CounterWithCallback.builder()
        .name("cryoproxy_audit_records_total")
        .help(
            "Audit records by state: journaled (on disk), written (in the database), dropped"
                + " (on_full: drop, or their database removed)")
        .labelNames("state")
        .callback(
            callback -> {
              AuditFigures a = audit;
              callback.call(a.journaled().getAsLong(), "journaled");
              callback.call(a.written().getAsLong(), "written");
              callback.call(a.dropped().getAsLong(), "dropped");
            })
        .register(registry);
    GaugeWithCallback.builder()
        .name("cryoproxy_audit_pending_records")
        .help("Audit records journaled and not yet written to the database")
        .callback(callback -> callback.call(audit.pending().getAsLong()))
        .register(registry);
    GaugeWithCallback.builder()
        .name("cryoproxy_audit_journal_bytes")
        .help("Bytes of audit records waiting in the journal")
        .callback(callback -> callback.call(audit.journalBytes().getAsLong()))
        .register(registry);
    GaugeWithCallback.builder()
        .name("cryoproxy_audit_oldest_pending_seconds")
        .help("Age of the oldest audit record not yet written to the database (0: none waits)")
        .callback(callback -> callback.call(audit.oldestPendingSeconds().getAsDouble()))
        .register(registry);
    Counter bytes =
        counter(
            "cryoproxy_bytes_total",
            "Bytes received from (in) and sent to (out) clients",
            "direction");
    bytesIn = bytes.labelValues(IN);
    bytesOut = bytes.labelValues(OUT);
    errors =
        counter(
            "cryoproxy_errors_total",
            "Errors sent to clients, by SQLSTATE class and by who raised them (proxy or server)",
            "class",
            "origin");
    pins =
        counter(
            "cryoproxy_pins_total",
            "Server connections pinned to a client for the session, by reason",
            "reason");
    serverPrepares =
        counter("cryoproxy_server_prepares_total", "Parse messages sent to a server to prepare");
    preparedEvictions =
        counter(
            "cryoproxy_prepared_evictions_total",
            "Statements evicted from the prepared-statement registry");
    breakerTransitions =
        counter(
            "cryoproxy_breaker_transitions_total",
            "Circuit breaker state changes per node",
            "node",
            "from",
            "to");
    retries = counter("cryoproxy_retries_total", "Connection attempts retried per node", "node");
    replays = counter("cryoproxy_replays_total", "Statements replayed on another server", "reason");
    REPLAY_REASONS.forEach(reason -> replays.labelValues(reason)); // exported as 0 until one
    probes =
        counter(
            "cryoproxy_probes_total",
            "Health probes per node and result (ok, failed)",
            "node",
            "result");
    Counter cacheRequests =
        counter(
            "cryoproxy_cache_requests_total",
            "Cacheable requests by result: hit (answered from the cache) or miss",
            "result");
    cacheHits = cacheRequests.labelValues("hit");
    cacheMisses = cacheRequests.labelValues("miss");
    cacheBypasses =
        counter(
            "cryoproxy_cache_bypasses_total",
            "Requests the result cache did not look up, by reason",
            "reason");
    cacheBypasses.labelValues("listener_down"); // exported from 0, like every fixed reason
    cacheEvictions =
        counter(
            "cryoproxy_cache_evictions_total",
            "Result cache entries removed by the size bound or their TTL",
            "cause");
    cacheEvictions.labelValues("size");
    cacheEvictions.labelValues("expired");
    cacheInvalidations =
        counter(
            "cryoproxy_cache_invalidations_total",
            "Result cache invalidations by source (proxy_write, notify, admin, listener_lost)",
            "source");
    for (String source : List.of("proxy_write", "notify", "admin", "listener_lost")) {
      cacheInvalidations.labelValues(source);
    }
    cacheNotifyLag =
        histogram(
            "cryoproxy_cache_invalidation_lag_seconds",
            "From a write's statement (the NOTIFY's timestamp) to its invalidation in the cache",
            ACQUIRE_BUCKETS);
    GaugeWithCallback.builder()
        .name("cryoproxy_cache_entries")
        .help("Entries in the result cache")
        .callback(callback -> callback.call(cacheEntries.getAsLong()))
        .register(registry);
    GaugeWithCallback.builder()
        .name("cryoproxy_cache_bytes")
        .help("Bytes the result cache holds (replies and keys)")
        .callback(callback -> callback.call(cacheBytes.getAsLong()))
        .register(registry);
    viewRefreshes =
        counter(
            "cryoproxy_view_refreshes_total",
            "Materialized-view refresh attempts by result: refreshed, fresh (another instance"
                + " refreshed it lately), busy (another instance is refreshing it), failed",
            "view",
            "result");
    viewRefreshSeconds =
        histogram(
            "cryoproxy_view_refresh_seconds",
            "Duration of materialized-view refreshes this instance did",
            DURATION_BUCKETS,
            "view");
    GaugeWithCallback.builder()
        .name("cryoproxy_view_refresh_age_seconds")
        .help("Seconds since any instance last refreshed the view")
        .labelNames("view")
        .callback(callback -> views.get().forEach(v -> callback.call(v.ageSeconds(), v.view())))
        .register(registry);
    GaugeWithCallback.builder()
        .name("cryoproxy_view_refresh_interval_seconds")
        .help("The configured refresh interval of the view (refresh_views[].every)")
        .labelNames("view")
        .callback(
            callback -> views.get().forEach(v -> callback.call(v.intervalSeconds(), v.view())))
        .register(registry);
    acquire =
        new PointsByLabels(
            histogram(
                "cryoproxy_acquire_seconds",
                "Time a client waited for a server connection",
                ACQUIRE_BUCKETS,
                "database",
                "node"));
    queries =
        new PointsByLabels(
            histogram(
                "cryoproxy_query_seconds",
                "Query duration, first message to ReadyForQuery",
                DURATION_BUCKETS,
                "database",
                "route"));
    transactions =
        new PointsByLabels(
            histogram(
                "cryoproxy_transaction_seconds",
                "Transaction duration, BEGIN (or first statement) to ReadyForQuery idle",
                DURATION_BUCKETS,
                "database",
                "route"));
    GaugeWithCallback.builder()
        .name("cryoproxy_prepared_statements")
        .help("Statements in the prepared-statement registry")
        .callback(callback -> callback.call(preparedStatements.getAsLong()))
        .register(registry);
    registry.register(gauges);
    Info build =
        Info.builder()
            .name("cryoproxy_build_info")
            .help("The running CryoProxy build")
            .labelNames("version")
            .register(registry);
    build.setLabelValues(version);
    JvmMetrics.builder().register(registry);
  }

  private Counter counter(String name, String help, String... labels) {
    return Counter.builder().name(name).help(help).labelNames(labels).register(registry);
  }

  private Histogram histogram(String name, String help, double[] buckets, String... labels) {
    // Classic buckets only: Debian's Prometheus scrapes text and does not read native histograms.
    return Histogram.builder()
        .name(name)
        .help(help)
        .unit(Unit.SECONDS)
        .classicOnly()
        .classicUpperBounds(buckets)
        .labelNames(labels)
        .register(registry);
  }

  /**
   * Exports the per-node counters of {@code nodes} ({@code host:port}, as the node label) at zero:
   * retries and every breaker transition. A series that appears only with its first event leaves
   * {@code rate()} and {@code increase()} without data, and a dashboard blank, exactly when nothing
   * went wrong; zero is the truth until then. Call it with the configured nodes at startup and
   * after each reload; nodes already known keep their counts.
   */
  public void initialiseNodes(Collection<String> nodes) {
    for (String node : nodes) {
      retries.labelValues(label(node));
      for (List<String> t : BREAKER_TRANSITIONS) {
        breakerTransitions.labelValues(label(node), t.get(0), t.get(1));
      }
    }
  }

  /** The registry the admin endpoint exposes. */
  public PrometheusRegistry registry() {
    return registry;
  }

  @Override
  public void clientLogin(String database, String user) {
    logins.labelValues(label(database)).inc();
  }

  @Override
  public void clientLoginFailed(String reason) {
    authFailures.labelValues(label(reason)).inc();
  }

  @Override
  public void tokenAccepted(boolean cached) {
    tokensAccepted.inc();
    if (cached) {
      tokenCacheHits.inc();
    }
  }

  @Override
  public void tokenRejected(String reason) {
    tokensRejected.labelValues(label(reason)).inc();
  }

  @Override
  public void registerRevocations(LongSupplier size, java.util.function.DoubleSupplier age) {
    revokedTokens = size;
    revocationAge = age;
  }

  @Override
  public void registerAudit(AuditFigures figures) {
    audit = figures;
  }

  @Override
  public void cacheHit() {
    cacheHits.inc();
  }

  @Override
  public void cacheMiss() {
    cacheMisses.inc();
  }

  @Override
  public void cacheBypass(String reason) {
    cacheBypasses.labelValues(label(reason)).inc();
  }

  @Override
  public void cacheEviction(String cause) {
    cacheEvictions.labelValues(label(cause)).inc();
  }

  @Override
  public void cacheInvalidation(String source) {
    cacheInvalidations.labelValues(label(source)).inc();
  }

  @Override
  public void cacheNotifyLag(long nanos) {
    cacheNotifyLag.observe(Unit.nanosToSeconds(Math.max(0, nanos)));
  }

  @Override
  public void viewRefresh(String view, String result, long nanos) {
    viewRefreshes.labelValues(label(view), label(result)).inc();
    if ("refreshed".equals(result)) {
      viewRefreshSeconds.labelValues(label(view)).observe(Unit.nanosToSeconds(nanos));
    }
  }

  @Override
  public void registerViews(Supplier<? extends Collection<ViewStats>> views) {
    this.views = views;
    for (ViewStats v : views.get()) {
      for (String result : List.of("refreshed", "fresh", "busy", "failed")) {
        viewRefreshes.labelValues(label(v.view()), result); // every result exported from 0
      }
    }
  }

  @Override
  public void registerCache(LongSupplier entries, LongSupplier bytes) {
    cacheEntries = entries;
    cacheBytes = bytes;
  }

  @Override
  public void clientClosed(String database, String user) {
    disconnects.labelValues(label(database)).inc();
  }

  @Override
  public void checkout(String database, String node, long nanosWaited) {
    acquire.get(database, node).observe(Unit.nanosToSeconds(nanosWaited));
  }

  @Override
  public void transaction(String database, String route, long nanos) {
    transactions.get(database, route).observe(Unit.nanosToSeconds(nanos));
  }

  @Override
  public void query(String database, String route, long nanos) {
    queries.get(database, route).observe(Unit.nanosToSeconds(nanos));
  }

  @Override
  public void bytes(String direction, long n) {
    (OUT.equals(direction) ? bytesOut : bytesIn).inc(n);
  }

  @Override
  public void error(String sqlstateClass, String origin) {
    String sqlClass = label(sqlstateClass);
    if (sqlClass.length() > 2) {
      sqlClass = sqlClass.substring(0, 2);
    }
    errors.labelValues(sqlClass, label(origin)).inc();
  }

  @Override
  public void pin(String reason) {
    pins.labelValues(label(reason)).inc();
  }

  @Override
  public void serverPrepare() {
    serverPrepares.inc();
  }

  @Override
  public void preparedEviction() {
    preparedEvictions.inc();
  }

  @Override
  public void breakerTransition(String node, String from, String to) {
    breakerTransitions.labelValues(label(node), label(from), label(to)).inc();
  }

  @Override
  public void retry(String node) {
    retries.labelValues(label(node)).inc();
  }

  @Override
  public void replay(String reason) {
    replays.labelValues(label(reason)).inc();
  }

  @Override
  public void probe(String node, boolean ok) {
    probes.labelValues(label(node), ok ? "ok" : "failed").inc();
  }

  @Override
  public void registerPools(Supplier<? extends Collection<PoolStats>> pools) {
    gauges.pools = pools;
  }

  @Override
  public void registerNodes(Supplier<? extends Collection<NodeStats>> nodes) {
    gauges.nodes = nodes;
  }

  @Override
  public void registerPreparedStatements(LongSupplier size) {
    preparedStatements = size;
  }

  /** The client rejects null label values; a missing name must not break the data path. */
  static String label(String value) {
    return value == null ? "" : value;
  }

  /**
   * The data points of a histogram with two labels, found by plain map look-ups: the
   * per-transaction events would otherwise build and hash a label list three times per transaction.
   * The label sets are small (databases × routes or nodes) and series are never removed, so nothing
   * goes stale.
   */
  private static final class PointsByLabels {
    private final Histogram histogram;
    private final Map<String, Map<String, DistributionDataPoint>> points =
        new ConcurrentHashMap<>();

    PointsByLabels(Histogram histogram) {
      this.histogram = histogram;
    }

    DistributionDataPoint get(String first, String second) {
      String a = label(first);
      String b = label(second);
      Map<String, DistributionDataPoint> inner = points.get(a);
      DistributionDataPoint point = inner == null ? null : inner.get(b);
      if (point != null) {
        return point;
      }
      return points
          .computeIfAbsent(a, k -> new ConcurrentHashMap<>())
          .computeIfAbsent(b, k -> histogram.labelValues(a, b));
    }
  }
}
