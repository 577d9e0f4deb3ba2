package org.cryoprotect.proxy.cache;

import com.github.benmanes.caffeine.cache.Cache;
import com.github.benmanes.caffeine.cache.Caffeine;
import com.github.benmanes.caffeine.cache.Expiry;
import com.github.benmanes.caffeine.cache.RemovalCause;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.Function;
import org.cryoprotect.proxy.config.ProxyConfig;
import org.cryoprotect.proxy.config.ProxyConfig.CacheRule;
import org.cryoprotect.proxy.metrics.ProxyMetrics;
import org.cryoprotect.proxy.routing.FunctionVolatility;
import org.cryoprotect.proxy.sql.CacheSql;
import org.cryoprotect.proxy.sql.ReadClassifier;

/**
 * The result cache (DESIGN §7): the server's reply bytes of a read, kept by everything that decides
 * them and replayed verbatim.
 *
 * <p>Never wrong, by construction:
 *
 * <ul>
 *   <li>The key holds the database, the server role, every session setting but {@code
 *       application_name} (the JWT claims are settings too), and the request's bytes; two sessions
 *       share an entry only when PostgreSQL would have answered them alike.
 *   <li>Invalidation is by generation: every relation name has a counter, and an entry remembers
 *       the counters of its relations as they were <em>before its query was sent</em>. A write
 *       committed through the proxy, a NOTIFY from a trigger or an admin flush bumps counters, and
 *       an entry whose counters moved is dead. So a read that raced a write can store its reply,
 *       but that reply is never served: the counter moved while it ran.
 *   <li>While the LISTEN connection of a database is down its entries are dead (an epoch moves) and
 *       nothing is stored or served for it.
 * </ul>
 *
 * Thread-safe; called on event loops, never blocks: catalog look-ups run on a thread of its own.
 */
public final class ResultCache implements AutoCloseable {
  /** Names of bypass reasons and invalidation sources, for metrics and SHOW CACHE. */
  public static final String SOURCE_WRITE = "proxy_write";

  public static final String SOURCE_NOTIFY = "notify";
  public static final String SOURCE_ADMIN = "admin";
  public static final String SOURCE_LISTENER = "listener_lost";

  /** Volatile built-ins that write no table: a read calling them flushes nothing. */
  private static final Set<String> HARMLESS_VOLATILE =
      Set.of(
          "nextval",
          "setval",
          "random",
          "random_normal",
          "clock_timestamp",
          "timeofday",
          "pg_sleep",
          "gen_random_uuid",
          "uuid_generate_v4",
          "txid_current",
          "pg_current_xact_id",
          "pg_notify",
          "set_config",
          "pg_advisory_lock",
          "pg_advisory_xact_lock",
          "pg_try_advisory_lock",
          "pg_try_advisory_xact_lock",
          "pg_advisory_unlock");

  /** A request as the cache sees it: who asks (context) and what (request bytes). */
  public record Key(String context, String request) {}

  /**
   * Whether and how a text is cached for one database and search path: {@code refusal} null when it
   * is, with the relation names it depends on, its TTL and the rule that covers it.
   */
  public record Plan(String refusal, List<String> relations, long ttlNanos, String rule) {
    static Plan refused(String why) {
      return new Plan(why, List.of(), 0, null);
    }

    public boolean cacheable() {
      return refusal == null;
    }

    /** Not waiting for a catalog look-up: the same text gets the same verdict for a while. */
    boolean lasting() {
      return refusal == null || !refusal.endsWith("not looked up yet");
    }
  }

  /** A miss being run: what its reply will be stored under, and the counters it started from. */
  public static final class Ticket {
    final Key key;
    final String database;
    final Plan plan;
    final long epoch;
    final long[] generations;

    Ticket(Key key, String database, Plan plan, long epoch, long[] generations) {
      this.key = key;
      this.database = database;
      this.plan = plan;
      this.epoch = epoch;
      this.generations = generations;
    }

    public Key key() {
      return key;
    }
  }

  private record Entry(
      byte[] reply,
      String database,
      String[] relations,
      long[] generations,
      long epoch,
      long ttlNanos,
      String rule) {}

  /** What SHOW CACHE reports per rule. */
  public record RuleStats(String rule, long entries, long bytes, long hits, long misses) {}

  private final ProxyConfig.Cache config;
  private final ProxyMetrics metrics;
  private final Function<String, FunctionVolatility> volatility;

  private RelationNames.Catalog catalogFor(String database) {
    return () -> catalogs.connect(database);
  }

  /** Opens a control-plane connection to a database's primary; blocking. */
  public interface Catalogs {
    java.sql.Connection connect(String database) throws Exception;
  }

  private final Catalogs catalogs;
  private final Map<String, CacheRule> rules = new LinkedHashMap<>(); // by schema.table
  private final Cache<Key, Entry> entries;
  // Final verdicts by database, search path and text: a hit does not lex its text again. Only
  // verdicts that no look-up can change soon are kept, not longer than a minute, and few: they
  // are memory outside max_size (a text is planned only the second time it is seen).
  private final Cache<String, Plan> plans =
      Caffeine.newBuilder().maximumSize(2_000).expireAfterWrite(Duration.ofMinutes(1)).build();
  private final Map<String, RelationNames> names = new ConcurrentHashMap<>();
  private final Map<String, AtomicLong> generations = new ConcurrentHashMap<>();
  private final Map<String, AtomicLong> epochs = new ConcurrentHashMap<>();
  private final Set<String> listening = ConcurrentHashMap.newKeySet(); // invalidations arrive
  private final Map<Key, List<Runnable>> flights = new ConcurrentHashMap<>();
  private final Map<String, LongAdder[]> perRule = new ConcurrentHashMap<>(); // hits, misses
  // The doorkeeper: a request is planned, recorded and stored only when it was seen before (three
  // bits of a 2^21-bit set, 256 KiB, cleared after 2^17 marks). A stream of one-off texts then
  // costs a hash each, not a lexer pass, a copy of its reply and an entry that only pushes useful
  // ones out. A new request passes for seen when its three bits are set already: 0.5 % of them
  // just before a clearing, 0.17 % on average. (Two bits of 2^20 let 1.8 % through, measured:
  // enough planning and storing of one-off texts to cost the all-miss benchmark 3 µs a query.)
  private static final int SEEN_BITS = 1 << 21;
  private static final int SEEN_MARKS = 1 << 17;
  private final AtomicLongArray seen = new AtomicLongArray(SEEN_BITS / 64);
  private final AtomicLong marks = new AtomicLong();
  private final Map<String, String> contexts = new ConcurrentHashMap<>(); // one copy of each
  private final LongAdder hits = new LongAdder();
  private final LongAdder misses = new LongAdder();
  private final LongAdder stores = new LongAdder();
  private final ExecutorService lookups;

  public ResultCache(
      ProxyConfig.Cache config,
      ProxyMetrics metrics,
      Function<String, FunctionVolatility> volatility,
      Catalogs catalogs) {
    this.config = config;
    this.metrics = metrics;
    this.volatility = volatility;
    this.catalogs = catalogs;
    for (CacheRule rule : config.rules()) {
      for (String table : rule.tables()) {
        rules.putIfAbsent(table, rule);
      }
    }
    this.entries =
        Caffeine.newBuilder()
            .maximumWeight(Math.max(1, config.maxSize()))
            .weigher((Key k, Entry e) -> weight(k, e))
            .expireAfter(Expiry.creating((Key k, Entry e) -> Duration.ofNanos(e.ttlNanos())))
            .executor(Runnable::run) // evictions happen in the call that went over the bound
            .evictionListener(
                (Key k, Entry e, RemovalCause cause) ->
                    metrics.cacheEviction(cause.name().toLowerCase(Locale.ROOT)))
            .build();
    this.lookups =
        config.enabled()
            ? Executors.newSingleThreadExecutor(
                r -> {
                  Thread t = new Thread(r, "cryoproxy-cache-catalog");
                  t.setDaemon(true);
                  return t;
                })
            : null;
  }

  /** A cache that is off. */
  public static ResultCache off() {
    return new ResultCache(ProxyConfig.Cache.OFF, ProxyMetrics.NONE, db -> null, db -> null);
  }

  public boolean enabled() {
    return config.enabled();
  }

  public long maxEntrySize() {
    return config.maxEntrySize();
  }

  /**
   * Entries of this database are neither served nor stored: its LISTEN connection is down, or it
   * has none (a database added by RELOAD; cache settings are read at start).
   */
  public boolean bypassed(String database) {
    return !listening.contains(database);
  }

  /**
   * What an entry holds on the heap: its reply and request text (a Latin-1 string: a byte a char,
   * two for other text) and about 240 bytes of objects (key, entry, their arrays, Caffeine's node
   * and table slot); the context string is shared by all entries of the same sessions' settings.
   */
  private static int weight(Key k, Entry e) {
    long w = e.reply().length + 2L * k.request().length() + 8L * e.relations().length + 240;
    return (int) Math.min(Integer.MAX_VALUE, w);
  }

  /** The one copy of a context string, so that entries of many sessions share it. */
  public String context(String made) {
    String known = contexts.get(made);
    if (known != null) {
      return known;
    }
    if (contexts.size() > 10_000) {
      contexts.clear(); // many distinct settings (a token per session): sharing helps little
    }
    contexts.putIfAbsent(made, made);
    return contexts.get(made);
  }

  /**
   * Whether {@code key} was asked for before: a request seen for the first time is not planned or
   * recorded, only marked, so that one-off texts cost next to nothing.
   */
  public boolean seenBefore(Key key) {
    int h = key.context().hashCode() * 31 + key.request().hashCode();
    int a = (h ^ (h >>> 16)) & (SEEN_BITS - 1);
    int b = ((h * 0x9E3779B9) >>> 11) & (SEEN_BITS - 1);
    int c = ((h * 0x85EBCA6B) ^ (h >>> 13)) & (SEEN_BITS - 1);
    boolean known = isSet(a) && isSet(b) && isSet(c);
    if (!known) {
      set(a);
      set(b);
      set(c);
      if (marks.incrementAndGet() >= SEEN_MARKS) {
        marks.set(0);
        for (int i = 0; i < seen.length(); i++) {
          seen.set(i, 0);
        }
      }
    }
    return known; // a stored request not seen since a clearing is a miss once more
  }

  private boolean isSet(int bit) {
    return (seen.get(bit >>> 6) & (1L << bit)) != 0;
  }

  private void set(int bit) {
    seen.getAndAccumulate(bit >>> 6, 1L << bit, (word, mask) -> word | mask);
  }

  /** A request seen for the first time: a miss that is not recorded. */
  public void unseen() {
    misses.increment();
    metrics.cacheMiss();
  }

  // ---------------------------------------------------------------- planning

  private static CacheSql.Analysis analysis(String sql) {
    return CacheSql.analyze(sql);
  }

  /**
   * Whether {@code sql} may be served from the cache for a session of {@code database} with this
   * {@code searchPath} (its {@code $user} already replaced). Looks nothing up on this thread: a
   * name or function the catalog has not told about yet refuses, and is looked up for next time.
   */
  public Plan plan(String database, String searchPath, String sql) {
    String key = database + '\0' + searchPath + '\0' + sql;
    Plan known = plans.getIfPresent(key);
    if (known != null) {
      return known;
    }
    Plan made = makePlan(database, searchPath, sql);
    if (made.lasting()) {
      plans.put(key, made);
    }
    return made;
  }

  private Plan makePlan(String database, String searchPath, String sql) {
    CacheSql.Analysis a = analysis(sql);
    if (a.denied() != null) {
      return Plan.refused(a.denied());
    }
    if (!a.readShape()) {
      return Plan.refused("not a read");
    }
    ReadClassifier.Classification c = ReadClassifier.classify(sql);
    if (c.kind() != ReadClassifier.Kind.READ) {
      return Plan.refused("not a read");
    }
    FunctionVolatility.Verdict functions = volatility.apply(database).immutable(c.functions());
    if (functions != FunctionVolatility.Verdict.SAFE) {
      return Plan.refused(
          functions == FunctionVolatility.Verdict.UNKNOWN
              ? "functions not looked up yet"
              : "calls a function that is not immutable");
    }
    if (a.relations().isEmpty() && a.hint() != CacheSql.Hint.CACHE) {
      return Plan.refused("reads no table");
    }
    RelationNames resolver =
        names.computeIfAbsent(database, d -> new RelationNames(catalogFor(d), lookups));
    long ttl = Long.MAX_VALUE;
    String rule = null;
    List<String> relations = new ArrayList<>(a.relations().size());
    for (CacheSql.Relation r : a.relations()) {
      String qualified = r.schema() != null ? r.toString() : resolver.resolve(searchPath, r.name());
      if (qualified == null) {
        return Plan.refused("relations not looked up yet");
      }
      if (qualified.isEmpty()) {
        return Plan.refused("no such relation");
      }
      CacheRule covering = rules.get(qualified);
      if (covering == null && a.hint() != CacheSql.Hint.CACHE) {
        return Plan.refused("relation not covered by a rule");
      }
      if (covering != null) {
        ttl = Math.min(ttl, covering.ttl().toNanos());
        rule = rule == null ? String.join(",", covering.tables()) : rule;
      }
      relations.add(bare(qualified));
    }
    if (a.hint() == CacheSql.Hint.CACHE) {
      Duration hinted = a.hintTtl() != null ? a.hintTtl() : Duration.ofSeconds(60);
      ttl = rule == null ? hinted.toNanos() : Math.min(ttl, hinted.toNanos());
      rule = rule == null ? "hint" : rule;
    }
    return new Plan(null, List.copyOf(relations), ttl, rule);
  }

  private static String bare(String qualified) {
    int dot = qualified.lastIndexOf('.');
    return dot < 0 ? qualified : qualified.substring(dot + 1);
  }

  /**
   * The part of a key that says who asks: the database, the server role, and every setting but
   * {@code application_name}, sorted.
   */
  public static String context(String database, String role, Map<String, String> settings) {
    StringBuilder b = new StringBuilder(64).append(database).append('\0').append(role);
    for (Map.Entry<String, String> e : new TreeMap<>(settings).entrySet()) {
      if (!e.getKey().equals("application_name")) {
        b.append('\0').append(e.getKey()).append('=').append(e.getValue());
      }
    }
    return b.toString();
  }

  // ---------------------------------------------------------------- hits and misses

  /** The reply stored for {@code key}, if it is alive; counts the hit. */
  public byte[] lookup(Key key, String database) {
    if (bypassed(database)) {
      return null;
    }
    Entry e = entries.getIfPresent(key);
    if (e == null) {
      return null;
    }
    if (!alive(e)) {
      entries.asMap().remove(key, e);
      return null;
    }
    hits.increment();
    rule(e.rule())[0].increment();
    metrics.cacheHit();
    return e.reply();
  }

  private boolean alive(Entry e) {
    if (epoch(e.database()).get() != e.epoch()) {
      return false;
    }
    for (int i = 0; i < e.relations().length; i++) {
      if (generation(e.database(), e.relations()[i]).get() != e.generations()[i]) {
        return false;
      }
    }
    return true;
  }

  /** A miss of a cacheable request: the counters it starts from, before its query is sent. */
  public Ticket miss(Key key, String database, Plan plan) {
    misses.increment();
    rule(plan.rule())[1].increment();
    metrics.cacheMiss();
    long[] gens = new long[plan.relations().size()];
    for (int i = 0; i < gens.length; i++) {
      gens[i] = generation(database, plan.relations().get(i)).get();
    }
    return new Ticket(key, database, plan, epoch(database).get(), gens);
  }

  /** The reply of a miss ended well: kept unless something it read changed meanwhile. */
  public void store(Ticket t, byte[] reply) {
    if (reply.length > config.maxEntrySize() || bypassed(t.database)) {
      return;
    }
    Entry e =
        new Entry(
            reply,
            t.database,
            t.plan.relations().toArray(String[]::new),
            t.generations,
            t.epoch,
            t.plan.ttlNanos(),
            t.plan.rule());
    if (alive(e)) {
      entries.put(t.key, e);
      stores.increment();
    }
  }

  /**
   * Concurrent identical misses run once: true when the caller leads (and must call {@link
   * #landed}); false when it waits, and {@code wake} runs once the leader landed.
   */
  public boolean lead(Key key, Runnable wake) {
    boolean[] leads = {false};
    flights.compute(
        key,
        (k, waiting) -> {
          if (waiting == null) {
            leads[0] = true;
            return new ArrayList<>(2);
          }
          waiting.add(wake);
          return waiting;
        });
    return leads[0];
  }

  /** The leader of {@code key}'s miss is done, stored or not: the waiters look again. */
  public void landed(Key key) {
    List<Runnable> waiting = flights.remove(key);
    if (waiting != null) {
      waiting.forEach(Runnable::run);
    }
  }

  // ---------------------------------------------------------------- invalidation

  private AtomicLong generation(String database, String relation) {
    return generations.computeIfAbsent(database + '\0' + relation, k -> new AtomicLong());
  }

  private AtomicLong epoch(String database) {
    return epochs.computeIfAbsent(database, k -> new AtomicLong());
  }

  /**
   * Whether a statement text may write: checked when it is sent, so that {@link #wrote} runs for it
   * when its transaction ends. Plain reads (pgbench's SELECT) say no at the cost of a look-up.
   */
  public boolean mayWrite(String database, String sql) {
    if (CacheSql.plainRead(sql)) {
      return false; // pgbench's SELECT: no call, no second statement, no CTE
    }
    ReadClassifier.Classification c = ReadClassifier.classify(sql);
    // DO, CALL and EXECUTE are never READ: a read's text is not lexed again here
    return c.kind() != ReadClassifier.Kind.READ || writingFunction(database, c.functions());
  }

  /**
   * A transaction that ran {@code sql} ended: every relation the text names becomes dead
   * (over-invalidating is harmless), or everything of the database when it ran something whose
   * writes it does not name (DO, CALL, EXECUTE, a volatile function not known to write nothing).
   * Writes a trigger or a cascade makes elsewhere arrive by NOTIFY.
   */
  public void wrote(String database, String sql) {
    CacheSql.Analysis a = analysis(sql);
    ReadClassifier.Classification c = ReadClassifier.classify(sql);
    if (a.opaque() || writingFunction(database, c.functions())) {
      flush(database, SOURCE_WRITE);
      return;
    }
    if (c.kind() == ReadClassifier.Kind.READ) {
      return;
    }
    for (CacheSql.Relation r : a.mentioned()) {
      AtomicLong g = generations.get(database + '\0' + r.name());
      if (g != null) {
        g.incrementAndGet();
        metrics.cacheInvalidation(SOURCE_WRITE);
      }
    }
  }

  private boolean writingFunction(String database, List<String> functions) {
    for (String f : functions) {
      if (!HARMLESS_VOLATILE.contains(f)
          && volatility.apply(database).check(List.of(f)) != FunctionVolatility.Verdict.SAFE) {
        return true;
      }
    }
    return false;
  }

  /** A NOTIFY or CACHE FLUSH named {@code table} ({@code schema.name} or a bare name). */
  public void invalidate(String database, String table, String source) {
    String name = table.contains(".") ? bare(table) : table;
    if (database == null) {
      for (String db : epochs.keySet()) {
        invalidate(db, name, source);
      }
      return;
    }
    generation(database, name).incrementAndGet();
    metrics.cacheInvalidation(source);
  }

  /** Everything of {@code database} (null: of every database) is dead. */
  public void flush(String database, String source) {
    if (database == null) {
      for (AtomicLong e : epochs.values()) {
        e.incrementAndGet();
      }
      entries.invalidateAll();
    } else {
      epoch(database).incrementAndGet();
      entries.asMap().entrySet().removeIf(e -> e.getValue().database().equals(database));
    }
    metrics.cacheInvalidation(source);
  }

  /** The LISTEN connection of {@code database} is down (true) or back (false). */
  public void bypass(String database, boolean down) {
    if (down) {
      if (listening.remove(database)) {
        flush(database, SOURCE_LISTENER);
      }
    } else {
      flush(database, SOURCE_LISTENER); // what changed while nobody listened
      listening.add(database);
    }
  }

  /** The time a NOTIFY took from its statement to here, for the histogram. */
  public void notified(long lagNanos) {
    metrics.cacheNotifyLag(lagNanos);
  }

  // ---------------------------------------------------------------- figures

  private LongAdder[] rule(String rule) {
    return perRule.computeIfAbsent(
        rule == null ? "-" : rule, r -> new LongAdder[] {new LongAdder(), new LongAdder()});
  }

  public long entryCount() {
    entries.cleanUp();
    return entries.estimatedSize();
  }

  public long bytes() {
    return entries.policy().eviction().map(e -> e.weightedSize().orElse(0)).orElse(0L);
  }

  public long hits() {
    return hits.sum();
  }

  public long misses() {
    return misses.sum();
  }

  public long maxSize() {
    return config.maxSize();
  }

  /** Per rule, for SHOW CACHE: entries, bytes, hits, misses. */
  public List<RuleStats> ruleStats() {
    Map<String, long[]> sizes = new TreeMap<>();
    for (Map.Entry<Key, Entry> e : entries.asMap().entrySet()) {
      long[] s = sizes.computeIfAbsent(e.getValue().rule(), r -> new long[2]);
      s[0]++;
      s[1] += weight(e.getKey(), e.getValue());
    }
    List<RuleStats> out = new ArrayList<>();
    Set<String> names = new java.util.TreeSet<>(perRule.keySet());
    names.addAll(sizes.keySet());
    for (String r : names) {
      long[] s = sizes.getOrDefault(r, new long[2]);
      LongAdder[] hm = rule(r);
      out.add(new RuleStats(r, s[0], s[1], hm[0].sum(), hm[1].sum()));
    }
    return out;
  }

  @Override
  public void close() {
    if (lookups != null) {
      lookups.shutdownNow();
    }
    entries.invalidateAll();
  }
}
