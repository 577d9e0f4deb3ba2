package org.cryoprotect.proxy.cache;

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
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Which table an unqualified name means under a client's {@code search_path}, from the catalog of
 * the database's primary ({@code to_regclass} with that path). Like the function look-up, an
 * unknown name makes the query uncached this time and is looked up on a control-plane thread for
 * the next one; answers are kept five minutes.
 */
final class RelationNames {
  private static final Logger log = LoggerFactory.getLogger(RelationNames.class);
  static final long TTL_NANOS = 300_000_000_000L;
  private static final int MAX_NAMES = 10_000;
  private static final String QUERY =
      "SELECT x, (SELECT n.nspname || '.' || c.relname FROM pg_catalog.pg_class c"
          + " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
          + " WHERE c.oid = pg_catalog.to_regclass(x))"
          + " FROM unnest(?::text[]) AS x";

  /** Opens a control-plane connection to the database's primary; blocking. */
  interface Catalog {
    Connection connect() throws Exception;
  }

  private record Known(String qualified, long at) {}

  private record Wanted(String searchPath, String name) {}

  private final Catalog catalog;
  private final Executor executor;
  private final Map<String, Known> known = new ConcurrentHashMap<>();
  private final Set<Wanted> wanted = ConcurrentHashMap.newKeySet();

  RelationNames(Catalog catalog, Executor executor) {
    this.catalog = catalog;
    this.executor = executor;
  }

  /**
   * {@code schema.name} of the relation {@code name} means under {@code searchPath} ({@code $user}
   * already replaced), "" when there is none, or null when not known yet (looked up meanwhile).
   */
  String resolve(String searchPath, String name) {
    Known k = known.get(searchPath + '\0' + name);
    long now = System.nanoTime();
    if (k != null && now - k.at() < TTL_NANOS) {
      return k.qualified();
    }
    if (wanted.add(new Wanted(searchPath, name))) {
      executor.execute(this::lookUp);
    }
    return k == null ? null : k.qualified();
  }

  private void lookUp() {
    List<Wanted> batch = new ArrayList<>(wanted);
    if (batch.isEmpty()) {
      return;
    }
    try (Connection c = catalog.connect()) {
      c.setAutoCommit(false);
      Map<String, List<Wanted>> byPath = new java.util.HashMap<>();
      for (Wanted w : batch) {
        byPath.computeIfAbsent(w.searchPath(), p -> new ArrayList<>()).add(w);
      }
      for (Map.Entry<String, List<Wanted>> e : byPath.entrySet()) {
        try (PreparedStatement set =
            c.prepareStatement("SELECT pg_catalog.set_config('search_path', ?, true)")) {
          set.setString(1, e.getKey());
          set.execute();
        }
        Map<String, Wanted> byQuoted = new java.util.HashMap<>();
        for (Wanted w : e.getValue()) {
          byQuoted.put('"' + w.name().replace("\"", "\"\"") + '"', w);
        }
        List<String> quoted = new ArrayList<>(byQuoted.keySet());
        try (PreparedStatement st = c.prepareStatement(QUERY)) {
          Array array = c.createArrayOf("text", quoted.toArray());
          st.setArray(1, array);
          long now = System.nanoTime();
          try (ResultSet rs = st.executeQuery()) {
            while (rs.next()) {
              Wanted w = byQuoted.get(rs.getString(1));
              String q = rs.getString(2);
              if (known.size() < MAX_NAMES) {
                known.put(w.searchPath() + '\0' + w.name(), new Known(q == null ? "" : q, now));
              }
            }
          }
        }
        c.commit();
      }
    } catch (Exception e) {
      log.warn("relation look-up for the result cache failed: {}", e.getMessage());
    } finally {
      wanted.removeAll(batch);
    }
  }
}
