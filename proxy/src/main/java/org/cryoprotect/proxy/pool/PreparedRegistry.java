package org.cryoprotect.proxy.pool;

import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import org.cryoprotect.proxy.protocol.frontend.Parse;
import org.cryoprotect.proxy.routing.ReadClassifier;

/**
 * Proxy-wide names for prepared statements: the same query text with the same parameter types gets
 * the same name on every server connection, whichever client prepared it under whatever name. A
 * server connection that already has the name skips the Parse.
 *
 * <p>Entries are never removed: a name must keep meaning one query for the life of the process. The
 * registry grows with the number of distinct prepared queries, which is small for applications that
 * prepare (they use placeholders); its size is exported as a metric.
 */
public final class PreparedRegistry {
  private final ConcurrentHashMap<Parse, Entry> byQuery = new ConcurrentHashMap<>();
  private final AtomicLong next = new AtomicLong();

  /**
   * One distinct statement: {@code parse} is the Parse to send a server, under the proxy name. Once
   * a server accepted it ({@link #verified}), a client's Parse of the same text is answered by the
   * proxy without borrowing a server connection.
   */
  public static final class Entry {
    private final String name;
    private final Parse parse;
    private final SqlScan.Effects effects;
    private volatile boolean verified;
    private volatile ReadClassifier.Classification classification;

    Entry(String name, Parse parse, SqlScan.Effects effects) {
      this.name = name;
      this.parse = parse;
      this.effects = effects;
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

  public Entry register(String query, int[] paramTypes) {
    return byQuery.computeIfAbsent(
        new Parse("", query, paramTypes),
        key -> {
          String name = "cryoproxy_" + next.incrementAndGet();
          return new Entry(name, new Parse(name, query, paramTypes), SqlScan.scan(query));
        });
  }

  public int size() {
    return byQuery.size();
  }
}
