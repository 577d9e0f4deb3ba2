package org.cryoprotect.proxy.health;

import com.zaxxer.hikari.HikariConfig;
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
 * <p>One connection, kept between probes, so a probe costs one round trip instead of a backend fork
 * and a login every interval on every node (and no connection-log noise on the server). When the
 * kept connection fails (server restarted, session killed), the same probe connects afresh once. A
 * probe after a failed one always connects afresh, at once: no pool stands in between. (A HikariCP
 * pool of one did before; after an outage its connection creator backed off for seconds, so the
 * probes saw a restarted primary several seconds late and its breaker stayed open.)
 *
 * <p>Every wait is bounded by {@code health.timeout}: connecting (connect + TLS + login) by
 * pgJDBC's connect and login timeouts, and the query by the connection's network timeout, which
 * also ends a probe of a server that stopped answering without closing the socket (SIGSTOP, a
 * dropped network). A probe therefore takes at most about twice the timeout.
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
  private final PGSimpleDataSource source;
  private volatile Connection connection; // kept between probes; changed under this
  private volatile NodeHealth latest;
  // The previous successful probe's receive position and time (probes of a node never overlap).
  private long receivedBefore;
  private Instant commitBefore; // the last replayed commit's time at that probe, if any
  private Instant probedBefore;
  private ScheduledFuture<?> task; // guarded by HealthProbes' lock
  private final AtomicBoolean askedNow = new AtomicBoolean(); // an off-schedule run is queued

  NodeProbe(Target target, NodeHealth previous) {
    this.target = Objects.requireNonNull(target, "target");
    this.source = dataSource(target, "health");
    this.latest =
        previous != null
            ? previous
            : NodeHealth.notProbed(target.database(), target.node(), target.role());
  }

  /** A HikariCP pool of {@code size} to the target's node; {@code purpose} names it. */
  static HikariConfig poolConfig(Target target, String purpose, int size) {
    long timeoutMs = target.timeout().toMillis();
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
    // The data source directly, not a JDBC URL: with a URL, HikariCP sets the JVM-wide
    // DriverManager login timeout.
    config.setDataSource(dataSource(target, purpose));
    config.setMaximumPoolSize(size);
    // No idle minimum: HikariCP would otherwise keep reconnecting to a down node in the background.
    config.setMinimumIdle(0);
    config.setConnectionTimeout(timeoutMs);
    config.setValidationTimeout(timeoutMs);
    // Do not connect while building the pool: a node down at start-up must just be down.
    config.setInitializationFailTimeout(-1);
    config.setReadOnly(true);
    return config;
  }

  /** pgJDBC's data source for the target's node, bounded by {@code health.timeout}. */
  static PGSimpleDataSource dataSource(Target target, String purpose) {
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
    return ds;
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
  synchronized NodeHealth probe() {
    NodeHealth result;
    try {
      result = query();
    } catch (SQLException | RuntimeException e) {
      result =
          NodeHealth.down(
              target.database(),
              target.node(),
              target.role(),
              describe(e),
              reason(e),
              Instant.now());
    }
    latest = result;
    return result;
  }

  /** On the kept connection; if that one fails, once more on a new one. */
  private NodeHealth query() throws SQLException {
    if (connection != null) {
      try {
        return query(connection);
      } catch (SQLException stale) {
        closeConnection();
        if (timedOut(stale)) {
          throw stale; // the server does not answer: a new connection would wait as long again
        }
        // The server restarted or ended the session: connect again, now.
      }
    }
    connection = source.getConnection();
    try {
      return query(connection);
    } catch (SQLException e) {
      closeConnection();
      throw e;
    }
  }

  private NodeHealth query(Connection c) throws SQLException {
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
      Instant now = Instant.now();
      NodeHealth health =
          NodeHealth.observed(
              target.database(),
              target.node(),
              target.role(),
              inRecovery,
              lsn,
              receiveLsn,
              replayAge,
              now,
              receivedBefore,
              commitBefore,
              probedBefore);
      receivedBefore = receiveLsn;
      commitBefore = replayAge == null ? null : NodeHealth.commitTime(now, replayAge);
      probedBefore = now;
      return health;
    }
  }

  private static boolean timedOut(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
      if (t instanceof java.net.SocketTimeoutException) {
        return true;
      }
    }
    return false;
  }

  private void closeConnection() {
    Connection c = connection;
    connection = null;
    if (c != null) {
      try {
        c.close();
      } catch (SQLException ignored) {
        // already broken: nothing to give back
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

  /** A few words for the probe's failure, from its SQLSTATE: nothing of the server's own text. */
  static String reason(Throwable e) {
    String state = null;
    for (Throwable t = e; t != null && state == null; t = t.getCause() == t ? null : t.getCause()) {
      if (t instanceof SQLException sql && sql.getSQLState() != null) {
        state = sql.getSQLState();
      }
      if (t instanceof java.net.SocketTimeoutException) {
        return "timed out";
      }
    }
    if (state == null) {
      return "probe failed";
    }
    if (state.startsWith("28")) {
      return "login refused";
    }
    return switch (state) {
      case "57P03" -> "starting up or shutting down";
      case "53300" -> "too many connections";
      case "3D000" -> "database does not exist";
      case "57P01", "57P02" -> "shutting down";
      default -> state.startsWith("08") ? "unreachable" : "probe failed (" + state + ")";
    };
  }

  /** Closes the kept connection; a probe running now finishes on its own. */
  @Override
  public void close() {
    Connection c = connection; // unsynchronized: close must not wait out a probe of a dead node
    if (c != null) {
      try {
        c.close();
      } catch (SQLException ignored) {
        // closing anyway
      }
    }
  }

  @Override
  public String toString() {
    return target.toString();
  }
}
