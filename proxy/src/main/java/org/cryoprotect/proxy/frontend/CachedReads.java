package org.cryoprotect.proxy.frontend;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.ChannelHandlerContext;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.cryoprotect.proxy.cache.ResultCache;
import org.cryoprotect.proxy.cache.ResultCache.Key;
import org.cryoprotect.proxy.cache.ResultCache.Plan;
import org.cryoprotect.proxy.cache.ResultCache.Ticket;
import org.cryoprotect.proxy.metrics.ProxyMetrics;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.ProtocolException;
import org.cryoprotect.proxy.protocol.backend.ReadyForQuery;
import org.cryoprotect.proxy.protocol.frontend.Parse;
import org.cryoprotect.proxy.protocol.frontend.Query;
import org.cryoprotect.proxy.protocol.frontend.Target;
import org.cryoprotect.proxy.sql.CacheSql;

/**
 * One client's side of the result cache (transaction mode only): before a server connection is
 * borrowed for a unit that is one read (a simple Query, or Parse/Bind/Describe/Execute/Sync with
 * one Execute), its reply is looked up; a hit is written to the client with no server at all. A
 * miss records the reply as it goes to the client and stores it when the unit ends idle with no
 * error, notice or parameter change. Statements that may write are remembered and invalidate what
 * they name when their transaction ends (before the client hears it ended).
 */
final class CachedReads {
  /** What {@link #tryAnswer} did with the unit in the backlog. */
  enum Outcome {
    /** Answered from the cache: the backlog is empty. */
    ANSWERED,
    /** An identical miss is running for another client: wait for {@code wake}. */
    WAITING,
    /** Run it on a server (recorded if it is a cacheable miss). */
    PROCEED
  }

  /** How long a client waits for another client's identical miss before running its own. */
  private static final long FLIGHT_WAIT_MILLIS = 2_000;

  private final ResultCache cache;
  private final String database;
  private final String role;
  private final Supplier<Map<String, String>> settings;
  private final StatementRenamer statements;
  private final ProxyMetrics metrics;

  private Map<String, String> contextOf; // the settings map the context was made from
  private String context;
  private Ticket ticket; // the miss being recorded, or null
  private boolean leading; // the ticket's key is a flight this client leads
  private byte[] recorded = new byte[0];
  private int recordedLength;
  private boolean waiting;
  // The lone Query last decoded for a look-up, while it waits in the backlog to be sent, and its
  // text: the write check reuses it instead of decoding the frame again.
  private ByteBuf lastQuery;
  private String lastQueryText;
  private final List<String> written = new ArrayList<>(2);

  CachedReads(
      ResultCache cache,
      String database,
      String role,
      Supplier<Map<String, String>> settings,
      StatementRenamer statements,
      ProxyMetrics metrics) {
    this.cache = cache;
    this.database = database;
    this.role = role;
    this.settings = settings;
    this.statements = statements;
    this.metrics = metrics;
  }

  boolean waiting() {
    return waiting;
  }

  // ---------------------------------------------------------------- look-up

  /**
   * Looks the unit in {@code backlog} up. {@code wake} runs on the client's loop when it waited for
   * another client's identical miss; {@code mayLead} false after such a wait (the client then runs
   * its own query without making others wait for it).
   */
  Outcome tryAnswer(
      ChannelHandlerContext ctx, ArrayDeque<ByteBuf> backlog, Runnable wake, boolean mayLead) {
    lastQuery = null; // set again below for a lone Query that stays in the backlog
    lastQueryText = null;
    if (cache.bypassed(database)) {
      metrics.cacheBypass("listener_down");
      return Outcome.PROCEED;
    }
    Request request;
    try {
      request = request(backlog);
    } catch (ProtocolException | IndexOutOfBoundsException e) {
      return Outcome.PROCEED; // the server says what is wrong
    }
    if (request == null) {
      return Outcome.PROCEED;
    }
    if (!CacheSql.looksLikeRead(request.sql)) {
      return Outcome.PROCEED; // a write or a command: nothing to look up
    }
    Key key = new Key(context(), request.key);
    if (!cache.seenBefore(key)) {
      cache.unseen();
      return Outcome.PROCEED;
    }
    Plan plan = cache.plan(database, searchPath(), request.sql);
    if (!plan.cacheable()) {
      return Outcome.PROCEED;
    }
    byte[] reply = cache.lookup(key, database);
    if (reply != null && (request.parse == null || statements.canAdopt(request.parse))) {
      answer(ctx, backlog, request, reply);
      return Outcome.ANSWERED;
    }
    if (mayLead && !cache.lead(key, () -> woken(ctx, wake))) {
      waiting = true;
      ctx.executor().schedule(() -> woken(ctx, wake), FLIGHT_WAIT_MILLIS, TimeUnit.MILLISECONDS);
      return Outcome.WAITING;
    }
    leading = mayLead;
    ticket = cache.miss(key, database, plan);
    recordedLength = 0;
    return Outcome.PROCEED;
  }

  private void woken(ChannelHandlerContext ctx, Runnable wake) {
    ctx.executor()
        .execute(
            () -> {
              if (waiting) {
                waiting = false;
                wake.run();
              }
            });
  }

  private void answer(
      ChannelHandlerContext ctx, ArrayDeque<ByteBuf> backlog, Request request, byte[] reply) {
    if (request.parse != null) {
      statements.adopt(backlog.peekFirst(), request.parse);
    }
    if (request.simple) {
      statements.queriedWithoutServer();
    }
    lastQuery = null; // released below: its buffer object may be recycled for another frame
    lastQueryText = null;
    ByteBuf frame;
    while ((frame = backlog.poll()) != null) {
      frame.release();
    }
    ctx.write(Unpooled.wrappedBuffer(reply), ctx.voidPromise());
    ctx.write(new ReadyForQuery(ReadyForQuery.IDLE).encode(ctx.alloc()), ctx.voidPromise());
  }

  private String context() {
    Map<String, String> now = settings.get();
    if (now != contextOf) {
      contextOf = now;
      context = cache.context(ResultCache.context(database, role, now));
    }
    return context;
  }

  /** The client's search_path with {@code $user} made the role it means. */
  private String searchPath() {
    Map<String, String> now = settings.get();
    String path = now.getOrDefault("search_path", "\"$user\", public");
    String user = now.getOrDefault("role", role);
    String quoted = '"' + user.replace("\"", "\"\"") + '"';
    return path.replace("\"$user\"", quoted).replace("$user", quoted);
  }

  /** A unit the cache may answer: its text, the request part of its key, its Parse if any. */
  private record Request(String sql, String key, Parse parse, boolean simple) {}

  /**
   * The backlog as one cacheable request, or null: a lone simple Query, or an extended unit of at
   * most one Parse and one Describe, exactly one Bind and one Execute (of all rows), then Sync.
   */
  private Request request(ArrayDeque<ByteBuf> backlog) {
    ByteBuf first = backlog.peekFirst();
    if (backlog.size() == 1 && Frames.type(first) == Query.TYPE) {
      String sql = Query.text(first);
      lastQuery = first;
      lastQueryText = sql;
      // the text itself is the key: it holds no NUL, and an extended unit's key always does
      return new Request(sql, sql, null, true);
    }
    if (backlog.size() < 3 || backlog.size() > 5) {
      return null;
    }
    StringBuilder shape = new StringBuilder(8);
    Parse parse = null;
    String portal = null;
    String statement = null;
    byte[] bound = null;
    Target described = null;
    boolean executed = false;
    int i = 0;
    for (ByteBuf f : backlog) {
      byte type = Frames.type(f);
      boolean last = ++i == backlog.size();
      shape.append((char) type);
      ByteBuf body = Frames.body(f);
      switch (type) {
        case 'P' -> {
          if (parse != null || statement != null || i != 1) {
            return null;
          }
          parse = Parse.decode(body);
        }
        case 'B' -> {
          if (statement != null) {
            return null;
          }
          portal = Frames.readCString(body);
          statement = Frames.readCString(body);
          bound = new byte[body.readableBytes()];
          body.readBytes(bound);
        }
        case 'D' -> {
          if (described != null) {
            return null;
          }
          described = Target.decode('D', body);
          shape.append((char) described.kind());
        }
        case 'E' -> {
          String name = Frames.readCString(body);
          if (executed || statement == null || !name.equals(portal) || body.readInt() != 0) {
            return null;
          }
          executed = true;
        }
        case 'S' -> {
          if (!last) {
            return null;
          }
        }
        default -> {
          return null;
        }
      }
    }
    if (!executed || Frames.type(backlog.peekLast()) != 'S') {
      return null;
    }
    Parse made = parse;
    if (parse != null && !parse.name().equals(statement)) {
      return null;
    }
    if (made == null) {
      made = statements.statement(statement);
      if (made == null) {
        return null; // the server answers 26000
      }
    }
    if (described != null
        && !(described.isStatement()
            ? described.name().equals(statement)
            : described.name().equals(portal))) {
      return null;
    }
    String key =
        shape
            + "\0"
            + Arrays.toString(made.paramTypes())
            + "\0"
            + made.query()
            + "\0"
            + new String(bound, StandardCharsets.ISO_8859_1);
    return new Request(made.query(), key, parse, false);
  }

  // ---------------------------------------------------------------- recording a miss

  /** A frame on its way to the client while a miss is recorded. */
  void toClient(ByteBuf frame) {
    if (ticket == null) {
      return;
    }
    byte type = Frames.type(frame);
    int n = frame.readableBytes();
    if ("12tTnDCI".indexOf(type) < 0 || recordedLength + n > cache.maxEntrySize()) {
      abandon(); // an error, a notice, a changed setting, a suspended portal, or too big
      return;
    }
    if (recordedLength + n > recorded.length) {
      recorded = Arrays.copyOf(recorded, Math.max(recordedLength + n, recorded.length * 2 + 256));
    }
    frame.getBytes(frame.readerIndex(), recorded, recordedLength, n);
    recordedLength += n;
  }

  /** The client's ReadyForQuery arrives with {@code status}. */
  void ready(byte status) {
    if (status == ReadyForQuery.IDLE) {
      if (!written.isEmpty()) {
        for (String sql : written) {
          cache.wrote(database, sql);
        }
        written.clear();
      }
      if (ticket != null) {
        cache.store(ticket, Arrays.copyOf(recorded, recordedLength));
      }
    }
    abandon();
  }

  /** The recorded miss will not be stored (replayed, lost, or the client left). */
  void abandon() {
    if (ticket != null) {
      Key key = ticket.key();
      ticket = null;
      if (recorded.length > 64 * 1024) {
        recorded = new byte[0]; // keep no large buffer for an idle client
      }
      if (leading) {
        leading = false;
        cache.landed(key);
      }
    }
  }

  // ---------------------------------------------------------------- writes

  /** A simple Query on its way to a server: its text was decoded already if it was looked up. */
  void sentQuery(ByteBuf frame) {
    String sql = frame == lastQuery ? lastQueryText : Query.textOrNull(frame);
    lastQuery = null;
    lastQueryText = null;
    sent(sql);
  }

  /** A statement text on its way to a server (a simple Query, or the statement of a Bind). */
  void sent(String sql) {
    if (sql != null && cache.mayWrite(database, sql)) {
      written.add(sql);
    }
  }

  /** The server connection was lost: what may have been written may have committed. */
  void lost() {
    abandon();
    for (String sql : written) {
      cache.wrote(database, sql);
    }
    written.clear();
  }
}
