package org.cryoprotect.proxy.health;

import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.time.Instant;
import java.util.Objects;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.atomic.AtomicBoolean;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.cryoprotect.proxy.config.ProxyConfig.ServerTls;
import org.cryoprotect.proxy.health.NodeHealth.Role;
import org.postgresql.ds.PGSimpleDataSource;

/**
 * Probes one node of one database over JDBC, on whatever thread calls {@link #probe}; never an
 * event loop. Keeps the latest result.
 *
 * <p>Why a HikariCP pool of one rather than {@code DriverManager} per probe: the connection
 * survives between probes, so a probe costs one round trip instead of a backend fork and a login
 * every interval on every node (and no connection-log noise on the server); when the connection
 * dies (server restarted, session killed) HikariCP's validation on borrow replaces it within the
 * same probe, bounded by {@code connectionTimeout}. It is also the control-plane building block
 * DESIGN §1 names. The pgJDBC data source is configured directly, not through a JDBC URL: with a
 * URL, HikariCP sets the JVM-wide {@code DriverManager} login timeout.
 *
 * <p>Every wait is bounded by {@code health.timeout}: borrowing (connect + TLS + login, or
 * validating an idle connection) by HikariCP's {@code connectionTimeout}, and the query by the
 * connection's network timeout, which also ends a probe of a server that stopped answering without
 * closing the socket (SIGSTOP, a dropped network). A probe therefore takes at most about twice the
 * timeout.
 */
final class NodeProbe implements AutoCloseable {
  /**
   * One row: recovery state, our WAL position (current on a primary, replayed on a replica), and on
   * a replica the received position and the age of the last replayed commit. Both CASE branches are
   * volatile calls, so only the one taken is evaluated: {@code pg_current_wal_lsn()} would fail
   * during recovery. Every function here is executable by any role.
   */
  static final String QUERY =
      "SELECT pg_is_in_recovery(),"
          + " CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()"
          + " ELSE pg_current_wal_lsn() END::text,"
          + " pg_last_wal_receive_lsn()::text,"
          + " EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8";

  /**
   * What is probed and how; a change of any of these (by RELOAD) replaces the probe. The password
   * is left out of {@link #toString}.
   */
  record Target(
      String database,
      Endpoint node,
      Role role,
      String dbname,
      String user,
      String password,
      ServerTls tls,
      Duration timeout,
      Duration interval) {
    @Override
    public String toString() {
      return role.label() + " " + node + " of database " + database;
    }
  }

  private final Target target;
  private final HikariDataSource pool;
  private volatile NodeHealth latest;
  private ScheduledFuture<?> task; // guarded by HealthProbes' lock
  private final AtomicBoolean askedNow = new AtomicBoolean(); // an off-schedule run is queued

  NodeProbe(Target target, NodeHealth previous) {
    this.target = Objects.requireNonNull(target, "target");
    this.pool = new HikariDataSource(poolConfig(target, "health", 1));
    this.latest =
        previous != null
            ? previous
            : NodeHealth.notProbed(target.database(), target.node(), target.role());
  }

  /** A HikariCP pool of {@code size} to the target's node; {@code purpose} names it. */
  static HikariConfig poolConfig(Target target, String purpose, int size) {
    long timeoutMs = target.timeout().toMillis();
    int timeoutSeconds = (int) Math.max(1, (timeoutMs + 999) / 1000); // pgJDBC counts seconds
    PGSimpleDataSource ds = new PGSimpleDataSource();
    ds.setServerNames(new String[] {target.node().host()});
    ds.setPortNumbers(new int[] {target.node().port()});
    ds.setDatabaseName(target.dbname());
    ds.setUser(target.user());
    ds.setPassword(target.password());
    ds.setApplicationName("cryoproxy-" + purpose);
    ds.setConnectTimeout(timeoutSeconds);
    ds.setLoginTimeout(timeoutSeconds);
    ds.setSslmode(target.tls().mode().sslmode());
    if (target.tls().caFile() != null) {
      ds.setSslRootCert(target.tls().caFile().toString());
    }
    HikariConfig config = new HikariConfig();
    config.setPoolName(
        "cryoproxy-"
            + purpose
            + "-"
            + target.database()
            + "-"
            + target.role().label()
            + "-"
            + target.node());
    config.setDataSource(ds);
    config.setMaximumPoolSize(size);
    // No idle minimum: HikariCP would otherwise keep reconnecting to a down node in the background
    // between probes; it connects only when a probe asks.
    config.setMinimumIdle(0);
    config.setConnectionTimeout(timeoutMs);
    config.setValidationTimeout(timeoutMs);
    // Do not connect while building the pool: a node down at start-up must just probe as down.
    config.setInitializationFailTimeout(-1);
    config.setReadOnly(true);
    return config;
  }

  Target target() {
    return target;
  }

  NodeHealth latest() {
    return latest;
  }

  /** True when an off-schedule run should be queued (none is yet). */
  boolean askNow() {
    return askedNow.compareAndSet(false, true);
  }

  /** The queued off-schedule run starts: later losses may ask again. */
  void asked() {
    askedNow.set(false);
  }

  ScheduledFuture<?> task() {
    return task;
  }

  void task(ScheduledFuture<?> task) {
    this.task = task;
  }

  /** Runs the probe query now, records and returns the result; never throws. */
  NodeHealth probe() {
    NodeHealth result;
    try {
      result = query();
    } catch (SQLException | RuntimeException e) {
      result =
          NodeHealth.down(
              target.database(), target.node(), target.role(), describe(e), Instant.now());
    }
    latest = result;
    return result;
  }

  private NodeHealth query() throws SQLException {
    try (Connection c = pool.getConnection()) {
      // HikariCP restores the connection's own network timeout when it is returned.
      c.setNetworkTimeout(Runnable::run, (int) target.timeout().toMillis());
      try (Statement st = c.createStatement();
          ResultSet rs = st.executeQuery(QUERY)) {
        if (!rs.next()) {
          throw new SQLException("the probe query returned no row");
        }
        boolean inRecovery = rs.getBoolean(1);
        long lsn = NodeHealth.parseLsn(rs.getString(2));
        long receiveLsn = NodeHealth.parseLsn(rs.getString(3));
        double age = rs.getDouble(4);
        Double replayAge = rs.wasNull() ? null : age;
        return NodeHealth.observed(
            target.database(),
            target.node(),
            target.role(),
            inRecovery,
            lsn,
            receiveLsn,
            replayAge,
            Instant.now());
      }
    }
  }

  /**
   * HikariCP's timeout exception ("Connection is not available, request timed out") carries the
   * real reason (refused, authentication failed, ...) as its cause; report that.
   */
  static String describe(Throwable e) {
    Throwable reason = e;
    while (reason.getCause() instanceof SQLException && reason.getCause() != reason) {
      reason = reason.getCause();
    }
    String message = reason.getMessage();
    return message == null || message.isBlank() ? reason.getClass().getSimpleName() : message;
  }

  @Override
  public void close() {
    pool.close();
  }

  @Override
  public String toString() {
    return target.toString();
  }
}
