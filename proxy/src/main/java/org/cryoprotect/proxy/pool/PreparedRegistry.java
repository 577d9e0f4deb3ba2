package org.cryoprotect.proxy.pool;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import org.cryoprotect.proxy.protocol.frontend.Parse;
import org.cryoprotect.proxy.sql.ReadClassifier;
import org.cryoprotect.proxy.sql.SqlScan;

/**
 * Proxy-wide names for the prepared statements of one (database, role): the same query text with
 * the same parameter types, parsed under the same search_path and role, gets the same name on every
 * server connection of that pool, whichever client prepared it under whatever name. A server
 * connection that already has the name skips the Parse.
 *
 * <p>Why per (database, role) and per search_path: "verified" means a server of this database, as
 * this role, accepted the text; on another database it may not even parse, and PostgreSQL fixes a
 * statement's meaning by the search_path in effect when it was parsed, so two clients with
 * different search_paths must never share one server-side statement.
 *
 * <p>Bounded (least recently registered first out): names are never reused (a counter), so an entry
 * that leaves the registry only means that the next client to prepare the same text gets a new
 * name; statements already made under the old one stay valid where they are.
 */
public final class PreparedRegistry {
  private final int bound;
  private final LinkedHashMap<Key, Entry> byQuery = new LinkedHashMap<>(64, 0.75f, true);
  private final AtomicLong next;

  private record Key(String query, String context, List<Integer> paramTypes) {}

  /** {@code next}: shared by all registries, so that a name means one statement proxy-wide. */
  PreparedRegistry(int bound, AtomicLong next) {
    this.bound = bound;
    this.next = next;
  }

  /**
   * One distinct statement: {@code parse} is the Parse to send a server, under the proxy name. Once
   * a server accepted it ({@link #verified}), a client's Parse of the same text is answered by the
   * proxy without borrowing a server connection.
   */
  public static final class Entry {
    private final String name;
    private final Parse parse;
    private final SqlScan.Effects effects;
    private final int control;
    private volatile boolean verified;
    private volatile ReadClassifier.Classification classification;

    Entry(String name, Parse parse, SqlScan.Effects effects) {
      this.name = name;
      this.parse = parse;
      this.effects = effects;
      this.control = SqlScan.transactionControl(parse.query());
    }

    public String name() {
      return name;
    }

    public Parse parse() {
      return parse;
    }

    public SqlScan.Effects effects() {
      return effects;
    }

    /** {@link SqlScan#transactionControl(String)} of the text. */
    public int control() {
      return control;
    }

    /** How the statement routes (DESIGN §5), classified once per distinct text. */
    public ReadClassifier.Classification classification() {
      ReadClassifier.Classification c = classification;
      if (c == null) {
        c = ReadClassifier.classify(parse.query());
        classification = c;
      }
      return c;
    }

    public boolean verified() {
      return verified;
    }

    public void verified(boolean accepted) {
      this.verified = accepted;
    }
  }

  /** {@code context}: what fixes the text's meaning besides itself (search_path, role). */
  public Entry register(String query, int[] paramTypes, String context) {
    List<Integer> types = new ArrayList<>(paramTypes.length);
    for (int t : paramTypes) {
      types.add(t);
    }
    Key key = new Key(query, context, types);
    synchronized (byQuery) {
      Entry entry = byQuery.get(key);
      if (entry == null) {
        String name = "cryoproxy_" + next.incrementAndGet();
        entry = new Entry(name, new Parse(name, query, paramTypes), SqlScan.scan(query));
        byQuery.put(key, entry);
        if (byQuery.size() > bound) {
          byQuery.remove(byQuery.keySet().iterator().next());
        }
      }
      return entry;
    }
  }

  public int size() {
    synchronized (byQuery) {
      return byQuery.size();
    }
  }
}
