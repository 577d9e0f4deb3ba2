package org.cryoprotect.proxy.testing;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.CompletableFuture;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.embedded.PgNode;

/**
 * Server backends found and ended from a direct superuser connection, the way an operator (or a
 * failover) ends them: {@code pg_terminate_backend}, so the backend sends FATAL 57P01 and closes.
 */
public final class Backends {
  /** The application_name of the connections this class opens; never a target itself. */
  public static final String APPLICATION = "cryoproxy-test-terminator";

  private Backends() {}

  public static Connection connect(PgNode node) throws SQLException {
    Properties props = new Properties();
    props.setProperty("user", PgCluster.SUPERUSER);
    props.setProperty("password", PgCluster.SUPERUSER_PASSWORD);
    props.setProperty("ApplicationName", APPLICATION);
    return node.connect("postgres", props);
  }

  /**
   * Waits (up to {@code within}) for a backend of database {@code database} in {@code state}
   * ('active', 'idle in transaction', ...) whose current or last query contains {@code marker},
   * terminates it and waits until it is gone. Returns its pid; fails when none showed up.
   */
  public static int terminateWhen(
      PgNode node, String database, String marker, String state, Duration within)
      throws SQLException, InterruptedException {
    long deadline = System.nanoTime() + within.toNanos();
    try (Connection c = connect(node);
        PreparedStatement find =
            c.prepareStatement(
                "SELECT pid FROM pg_stat_activity WHERE datname = ? AND state = ?"
                    + " AND pid <> pg_backend_pid() AND strpos(query, ?) > 0"
                    + " AND backend_type = 'client backend'")) {
      find.setString(1, database);
      find.setString(2, state);
      find.setString(3, marker);
      while (System.nanoTime() < deadline) {
        try (ResultSet rs = find.executeQuery()) {
          if (rs.next()) {
            int pid = rs.getInt(1);
            terminate(c, List.of(pid));
            awaitGone(c, List.of(pid), Duration.ofSeconds(10));
            return pid;
          }
        }
        Thread.sleep(10);
      }
    }
    throw new AssertionError(
        "no backend of " + database + " in state '" + state + "' ran a query with " + marker);
  }

  /** {@link #terminateWhen} on another thread, started now. */
  public static CompletableFuture<Integer> terminateLater(
      PgNode node, String database, String marker, String state, Duration within) {
    return CompletableFuture.supplyAsync(
        () -> {
          try {
            return terminateWhen(node, database, marker, state, within);
          } catch (SQLException e) {
            throw new IllegalStateException(e);
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
          }
        });
  }

  public static void terminate(Connection c, List<Integer> pids) throws SQLException {
    try (PreparedStatement kill = c.prepareStatement("SELECT pg_terminate_backend(?)")) {
      for (int pid : pids) {
        kill.setInt(1, pid);
        kill.executeQuery().close();
      }
    }
  }

  /** Waits until none of {@code pids} is listed in pg_stat_activity any more. */
  public static void awaitGone(Connection c, List<Integer> pids, Duration within)
      throws SQLException, InterruptedException {
    long deadline = System.nanoTime() + within.toNanos();
    try (PreparedStatement alive =
        c.prepareStatement("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY (?)")) {
      alive.setArray(1, c.createArrayOf("int4", new ArrayList<>(pids).toArray()));
      while (System.nanoTime() < deadline) {
        try (ResultSet rs = alive.executeQuery()) {
          rs.next();
          if (rs.getInt(1) == 0) {
            return;
          }
        }
        Thread.sleep(10);
      }
    }
    throw new AssertionError("backends " + pids + " still alive after " + within);
  }
}
