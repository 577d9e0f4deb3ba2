package org.cryoprotect.proxy.cache;

import java.sql.Connection;
import java.sql.Statement;
import java.util.concurrent.TimeUnit;
import javax.sql.DataSource;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One database's LISTEN connection (control plane, a thread of its own): every NOTIFY on the
 * invalidation channel names a table whose cached replies die. The payload is {@code schema.table}
 * and, after a space, the writing statement's time in microseconds since the epoch (the triggers
 * {@code cryoproxy.enable_cache_invalidation} installs send both).
 *
 * <p>While the connection is down the cache neither serves nor stores for the database: a write
 * from elsewhere would go unnoticed. It starts that way, and each time the connection is back the
 * database's entries are flushed first, for what changed while nobody listened.
 */
public final class InvalidationListener implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(InvalidationListener.class);
  private static final long MAX_BACKOFF_MILLIS = 2_000;

  private final ResultCache cache;
  private final String database;
  private final DataSource source;
  private final String channel;
  private final Thread thread;
  private volatile boolean running = true;
  private volatile Connection current;

  public InvalidationListener(
      ResultCache cache, String database, DataSource source, String channel) {
    this.cache = cache;
    this.database = database;
    this.source = source;
    this.channel = channel;
    this.thread = new Thread(this::run, "cryoproxy-cache-listen-" + database);
    this.thread.setDaemon(true);
  }

  public InvalidationListener start() {
    cache.bypass(database, true);
    thread.start();
    return this;
  }

  private void run() {
    long backoff = 50;
    while (running) {
      try (Connection c = source.getConnection()) {
        current = c;
        try (Statement st = c.createStatement()) {
          st.execute("LISTEN " + channel);
        }
        cache.bypass(database, false);
        log.info("result cache of database {} listens on {}", database, channel);
        backoff = 50;
        PGConnection pg = c.unwrap(PGConnection.class);
        while (running) {
          PGNotification[] notes = pg.getNotifications(500);
          if (notes == null) {
            continue;
          }
          for (PGNotification n : notes) {
            notified(n.getParameter());
          }
          if (notes.length == 0 && !c.isValid(2)) {
            throw new java.sql.SQLException("the LISTEN connection stopped answering");
          }
        }
      } catch (Exception e) {
        if (!running) {
          return;
        }
        cache.bypass(database, true);
        log.warn(
            "result cache of database {}: LISTEN connection lost ({}); bypassed until it is back",
            database,
            e.getMessage());
        try {
          TimeUnit.MILLISECONDS.sleep(backoff);
        } catch (InterruptedException ie) {
          return;
        }
        backoff = Math.min(MAX_BACKOFF_MILLIS, backoff * 2);
      } finally {
        current = null;
      }
    }
  }

  private void notified(String payload) {
    int space = payload.indexOf(' ');
    String table = space < 0 ? payload : payload.substring(0, space);
    if (table.isEmpty()) {
      cache.flush(database, ResultCache.SOURCE_NOTIFY); // a NOTIFY without a table: all
      return;
    }
    cache.invalidate(database, table, ResultCache.SOURCE_NOTIFY);
    if (space > 0) {
      try {
        long micros = Long.parseLong(payload.substring(space + 1).trim());
        java.time.Instant now = java.time.Instant.now();
        long nowMicros = now.getEpochSecond() * 1_000_000 + now.getNano() / 1_000;
        cache.notified(TimeUnit.MICROSECONDS.toNanos(nowMicros - micros));
      } catch (NumberFormatException e) {
        // a payload of another writer: the table is enough
      }
    }
  }

  @Override
  public void close() {
    running = false;
    thread.interrupt();
    Connection c = current;
    if (c != null) {
      try {
        c.close();
      } catch (Exception e) {
        // closing anyway
      }
    }
  }
}
