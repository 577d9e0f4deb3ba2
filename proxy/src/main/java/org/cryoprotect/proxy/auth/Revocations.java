package org.cryoprotect.proxy.auth;

import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The token ids ({@code jti}) listed in {@code auth.revoked_tokens}, held in memory for the login
 * path and for sessions at their next transaction boundary (DESIGN §6).
 *
 * <p>One control-plane thread per source database (each distinct primary and database name). It
 * LISTENs on {@value #CHANNEL}, where the migration's trigger announces each revoked {@code jti},
 * and reads the whole table again every {@code revocation_poll}: a revocation made while the
 * connection was down is picked up by the next read. A lookup is a set membership test, safe on an
 * event loop.
 *
 * <p>When no source can be read the proxy goes on with the list it has (fail open): refusing every
 * token because the list is unreadable would turn a revocation-table problem into an outage. That
 * state is never silent: the age of the last complete read is exported ({@link #ageSeconds}), a
 * warning is logged, and the Security alerts fire on it.
 */
public final class Revocations implements AutoCloseable {
  public static final String CHANNEL = "cryoproxy_revoked_tokens";
  private static final Logger log = LoggerFactory.getLogger(Revocations.class);
  private static final long RETRY_MS = 1_000;
  private static final long WAIT_SLICE_MS = 500; // how soon close() is noticed
  static final String READ_SQL =
      "SELECT jti FROM auth.revoked_tokens WHERE expires_at IS NULL OR expires_at > now()";

  /** A source database: a name for logs and the way to open a connection to its primary. */
  public record Source(String name, ConnectionFactory connect) {}

  /** Opens a new control-plane connection. */
  @FunctionalInterface
  public interface ConnectionFactory {
    Connection open() throws SQLException;
  }

  private final Duration poll;
  private final Map<String, Set<String>> bySource = new ConcurrentHashMap<>();
  private final Map<String, Long> readAtNanos = new ConcurrentHashMap<>();
  private final List<Thread> threads = new ArrayList<>();
  private final long startedNanos = System.nanoTime();
  private volatile boolean closed;

  public Revocations(List<Source> sources, Duration poll) {
    this.poll = poll;
    for (Source source : sources) {
      bySource.put(source.name(), Set.of());
      Thread t = new Thread(() -> run(source), "cryoproxy-revocations-" + threads.size());
      t.setDaemon(true);
      threads.add(t);
    }
  }

  /** No sources: nothing is ever revoked (JWT logins without a database list, or tests). */
  public static Revocations none() {
    return new Revocations(List.of(), Duration.ofSeconds(10));
  }

  public Revocations start() {
    threads.forEach(Thread::start);
    return this;
  }

  /** Whether {@code jti} is revoked in any source; a token without a jti cannot be revoked. */
  public boolean isRevoked(String jti) {
    if (jti == null) {
      return false;
    }
    for (Set<String> revoked : bySource.values()) {
      if (revoked.contains(jti)) {
        return true;
      }
    }
    return false;
  }

  /** Revoked ids known now, over all sources. */
  public int size() {
    Set<String> all = new HashSet<>();
    bySource.values().forEach(all::addAll);
    return all.size();
  }

  /**
   * Seconds since the stalest source was last read whole (since start when one never was); 0 with
   * no sources.
   */
  public double ageSeconds() {
    long now = System.nanoTime();
    long oldest = 0;
    for (String source : bySource.keySet()) {
      long at = readAtNanos.getOrDefault(source, startedNanos);
      oldest = Math.max(oldest, now - at);
    }
    return oldest / 1e9;
  }

  private void run(Source source) {
    while (!closed) {
      try (Connection c = source.connect().open()) {
        try (Statement s = c.createStatement()) {
          s.execute("LISTEN " + CHANNEL);
        }
        PGConnection pg = c.unwrap(PGConnection.class);
        while (!closed) {
          readAll(source, c);
          long nextRead = System.nanoTime() + poll.toNanos();
          long left;
          while (!closed && (left = nextRead - System.nanoTime()) > 0) {
            long waitMs = Math.min(WAIT_SLICE_MS, TimeUnit.NANOSECONDS.toMillis(left));
            PGNotification[] notes = pg.getNotifications((int) Math.max(1, waitMs));
            if (notes != null && notes.length > 0) {
              added(source, notes);
            }
          }
        }
      } catch (SQLException | RuntimeException e) {
        if (closed) {
          return;
        }
        log.warn(
            "revoked tokens of {} not read ({}); going on with the {} known, retrying",
            source.name(),
            e.getMessage(),
            bySource.get(source.name()).size());
        sleep(RETRY_MS);
      }
    }
  }

  private void readAll(Source source, Connection c) throws SQLException {
    Set<String> read = new HashSet<>();
    try (Statement s = c.createStatement();
        ResultSet rs = s.executeQuery(READ_SQL)) {
      while (rs.next()) {
        read.add(rs.getString(1));
      }
    }
    replace(source.name(), read);
    readAtNanos.put(source.name(), System.nanoTime());
  }

  /** {@code source}'s revoked ids are now {@code ids}. */
  void replace(String source, Set<String> ids) {
    bySource.put(source, Set.copyOf(ids));
  }

  private void added(Source source, PGNotification[] notes) {
    Set<String> next = new HashSet<>(bySource.get(source.name()));
    for (PGNotification n : notes) {
      if (CHANNEL.equals(n.getName()) && !n.getParameter().isEmpty()) {
        next.add(n.getParameter());
      }
    }
    replace(source.name(), next);
    log.info("{} token ids revoked in {}", notes.length, source.name());
  }

  private static void sleep(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** Stops the threads; their connections close as they notice (within one wait). */
  @Override
  public void close() {
    closed = true;
    threads.forEach(Thread::interrupt);
  }
}
