package org.cryoprotect.proxy.routing;

import java.sql.Array;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executor;
import org.cryoprotect.proxy.health.HealthProbes;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Whether the functions a query calls may run on a replica, from {@code pg_proc.provolatile} on the
 * database's primary (DESIGN §5). A name unknown so far makes the query go to the primary this
 * time, and is looked up on a control-plane thread for the next one: an event loop never waits for
 * the catalog.
 *
 * <p>A name is judged by its most volatile overload in any schema (overload resolution and the
 * search path are the server's business; being conservative only costs a primary round trip). A
 * name absent from {@code pg_proc} is a keyword or type-cast syntax, not a call. Answers are kept
 * {@link #TTL_NANOS} and then looked up again, so a redefined function is noticed.
 */
public final class FunctionVolatility {
  private static final Logger log = LoggerFactory.getLogger(FunctionVolatility.class);
  static final long TTL_NANOS = 300_000_000_000L; // 5 minutes
  private static final int MAX_NAMES = 10_000;
  static final String QUERY =
      "SELECT n, coalesce(max(p.provolatile::text), '-')"
          + " FROM unnest(?::text[]) AS n LEFT JOIN pg_catalog.pg_proc p ON p.proname = n"
          + " GROUP BY n";

  /** The verdict for all functions of one query. */
  public enum Verdict {
    SAFE,
    VOLATILE,
    UNKNOWN
  }

  private record Known(char volatility, long at) {}

  private final HealthProbes health;
  private final String database;
  private final Executor executor;
  private final Map<String, Known> known = new ConcurrentHashMap<>();
  private final Set<String> wanted = ConcurrentHashMap.newKeySet();

  FunctionVolatility(HealthProbes health, String database, Executor executor) {
    this.health = health;
    this.database = database;
    this.executor = executor;
  }

  public Verdict check(List<String> functions) {
    return judge(functions, "v");
  }

  /**
   * For the result cache: SAFE only when every function is IMMUTABLE in every overload (or not a
   * function at all). A STABLE function may read the clock, a setting or another table.
   */
  public Verdict immutable(List<String> functions) {
    return judge(functions, "sv");
  }

  /** VOLATILE when a known function's volatility is one of {@code unsafe}. */
  private Verdict judge(List<String> functions, String unsafe) {
    if (functions.isEmpty()) {
      return Verdict.SAFE;
    }
    long now = System.nanoTime();
    Verdict verdict = Verdict.SAFE;
    boolean lookup = false;
    for (String name : functions) {
      Known k = known.get(name);
      if (k == null) {
        verdict = verdict == Verdict.VOLATILE ? verdict : Verdict.UNKNOWN;
        lookup |= wanted.add(name);
        continue;
      }
      if (now - k.at() > TTL_NANOS) {
        lookup |= wanted.add(name); // still answer from what we know meanwhile
      }
      if (unsafe.indexOf(k.volatility()) >= 0) {
        verdict = Verdict.VOLATILE;
      }
    }
    if (lookup) {
      executor.execute(this::lookUp);
    }
    return verdict;
  }

  private void lookUp() {
    List<String> names = new ArrayList<>(wanted);
    if (names.isEmpty()) {
      return;
    }
    try (Connection c = health.controlConnection(database);
        PreparedStatement st = c.prepareStatement(QUERY)) {
      Array array = c.createArrayOf("text", names.toArray());
      st.setArray(1, array);
      long now = System.nanoTime();
      try (ResultSet rs = st.executeQuery()) {
        while (rs.next()) {
          String v = rs.getString(2);
          if (known.size() < MAX_NAMES || known.containsKey(rs.getString(1))) {
            known.put(rs.getString(1), new Known(v.isEmpty() ? '-' : v.charAt(0), now));
          }
        }
      }
      wanted.removeAll(names);
    } catch (Exception e) {
      wanted.removeAll(names); // asked again by the next query that needs them
      log.warn("volatility look-up for database {} failed: {}", database, e.getMessage());
    }
  }
}
