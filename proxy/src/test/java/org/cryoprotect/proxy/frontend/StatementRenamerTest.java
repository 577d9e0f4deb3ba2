package org.cryoprotect.proxy.frontend;

import static java.nio.charset.StandardCharsets.US_ASCII;
import static org.assertj.core.api.Assertions.assertThat;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import io.netty.buffer.ByteBufUtil;
import io.netty.channel.Channel;
import io.netty.channel.embedded.EmbeddedChannel;
import java.lang.reflect.Constructor;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;
import org.cryoprotect.proxy.backend.ServerConnection;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.cryoprotect.proxy.frontend.Pending.Kind;
import org.cryoprotect.proxy.metrics.ProxyMetrics;
import org.cryoprotect.proxy.pool.PooledServer;
import org.cryoprotect.proxy.pool.PreparedRegistry;
import org.cryoprotect.proxy.pool.ServerPool;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.backend.BackendKeyData;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse;
import org.cryoprotect.proxy.protocol.frontend.Bind;
import org.cryoprotect.proxy.protocol.frontend.Parse;
import org.cryoprotect.proxy.protocol.frontend.Target;
import org.cryoprotect.proxy.sql.SqlScan;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The life of a client's prepared statement in transaction mode, as a table. Each row is a list of
 * steps {@code "command => trace"}: the trace is what the renamer did through its {@link
 * StatementRenamer.Link}, in order ({@code PARSE(own) x}: a reply expected for the proxy alone;
 * {@code >P x 'text'}: a frame written to the server connection). A step without {@code =>} only
 * sets the scene. The commands are those of {@link World#run}.
 */
class StatementRenamerTest {
  static final ByteBufAllocator ALLOC = ByteBufAllocator.DEFAULT;

  static Arguments life(String name, String... steps) {
    return Arguments.of(name, List.of(steps));
  }

  static Stream<Arguments> lives() {
    return Stream.of(
        life(
            "a Parse past limits.max_client_prepared_statements fails the batch with 54000; a"
                + " Parse of a name the client has is still 42P05, and a Close makes room",
            "perclient 2",
            "P s1 SELECT 1",
            "P s2 SELECT 2",
            "done",
            "P s3 SELECT 3 => refuse 54000",
            "names => s1,s2",
            "P s1 SELECT 4 => PARSE dup s1; >P cryoproxy_1 'SELECT 1'",
            "done",
            "C s2 => local LOCAL_CLOSE_COMPLETE",
            "P s3 SELECT 3 => PARSE cryoproxy_3 for s3; >P cryoproxy_3 'SELECT 3'",
            "names => s1,s3"),
        life(
            "a named Parse the server lacks goes to it under the proxy-wide name",
            "P s1 SELECT 1 => PARSE cryoproxy_1 for s1; >P cryoproxy_1 'SELECT 1'",
            "names => s1",
            "has cryoproxy_1 => true"),
        life(
            "a named Parse of a text the server has is answered by the proxy",
            "P s1 SELECT 1",
            "P s2 SELECT 1 => local LOCAL_PARSE_COMPLETE",
            "names => s1,s2",
            "count => 1"),
        life(
            "another client's Parse of the same text shares the server's statement",
            "P s1 SELECT 1",
            "client 2",
            "P q SELECT 1 => local LOCAL_PARSE_COMPLETE",
            "names => q"),
        life(
            "another search_path never shares a statement: the text may mean something else",
            "P s1 SELECT 1",
            "client 2",
            "search_path other",
            "P s1 SELECT 1 => PARSE cryoproxy_2 for s1; >P cryoproxy_2 'SELECT 1'"),
        life(
            "the unnamed Parse goes to the server as it is and becomes the server's unnamed",
            "P - SELECT 1 => PARSE; >P \"\" 'SELECT 1'",
            "unnamed => server 'SELECT 1', client 'SELECT 1'",
            "names =>"),
        life(
            "a Bind of a named statement the server has is renamed",
            "P s1 SELECT 1",
            "B s1 => BIND cryoproxy_1; >B cryoproxy_1"),
        life(
            "on another server connection a Bind first makes the statement there, once",
            "P s1 SELECT 1",
            "done",
            "server 2",
            "B s1 => PARSE(own) cryoproxy_1; >P cryoproxy_1 'SELECT 1'; BIND cryoproxy_1;"
                + " >B cryoproxy_1",
            "B s1 => BIND cryoproxy_1; >B cryoproxy_1"),
        life(
            "on another server connection a Describe first makes the statement there, once",
            "P s1 SELECT 1",
            "server 2",
            "D s1 => PARSE(own) cryoproxy_1; >P cryoproxy_1 'SELECT 1'; DESCRIBE; >D S cryoproxy_1",
            "D s1 => DESCRIBE; >D S cryoproxy_1"),
        life(
            "portals are not renamed: their Describe and Close pass through",
            "DP p1 => DESCRIBE; >D P p1",
            "CP p1 => CLOSE; >C P p1"),
        life(
            "a Bind or Describe of a name the client never prepared passes through (26000)",
            "B nope => BIND; >B nope",
            "D nope => DESCRIBE; >D S nope"),
        life(
            "a Bind of the unnamed statement where the client's own is there",
            "P - SELECT 1",
            "B - => BIND; >B \"\""),
        life(
            "on another server connection the unnamed statement is made again first",
            "P - SELECT 1",
            "server 2",
            "unnamed => server none, client 'SELECT 1'",
            "B - => PARSE(own); >P \"\" 'SELECT 1'; BIND; >B \"\"",
            "unnamed => server 'SELECT 1', client 'SELECT 1'",
            "B - => BIND; >B \"\""),
        life(
            "another client's unnamed statement of the same text is not this client's",
            "P - SELECT 1",
            "client 2",
            "P - SELECT 1",
            "client 1",
            "B - => PARSE(own); >P \"\" 'SELECT 1'; BIND; >B \"\""),
        life(
            "a client without an unnamed statement closes another's first, so the server says"
                + " 26000",
            "client 2",
            "P - SELECT 2",
            "client 1",
            "B - => CLOSE(own); >C S \"\"; BIND; >B \"\"",
            "D - => DESCRIBE; >D S \"\"",
            "unnamed => server none, client none"),
        life(
            "a simple Query drops the unnamed statement, on the server and for the client",
            "P - SELECT 1",
            "Q =>",
            "unnamed => server none, client none",
            "B - => BIND; >B \"\""),
        life(
            "a Close of a named statement is answered locally; the server's stays for others",
            "P s1 SELECT 1",
            "C s1 => local LOCAL_CLOSE_COMPLETE",
            "names =>",
            "has cryoproxy_1 => true",
            "B s1 => BIND; >B s1"),
        life(
            "a Close of the unnamed statement goes to the server",
            "P - SELECT 1",
            "C - => CLOSE; >C S \"\"",
            "unnamed => server none, client none"),
        life(
            "a Parse the server refused frees the client's name and the server's record",
            "P s1 SELECT nope",
            "error",
            "names =>",
            "has cryoproxy_1 => false",
            "P s1 SELECT nope => PARSE cryoproxy_1 for s1; >P cryoproxy_1 'SELECT nope'"),
        life(
            "a Parse of a name the client has: the server's 42P05, said of the client's name",
            "P s1 SELECT 1",
            "P s1 SELECT 2 => PARSE dup s1; >P cryoproxy_1 'SELECT 1'",
            "names => s1",
            "B s1 => BIND cryoproxy_1; >B cryoproxy_1"),
        life(
            "a duplicate on a server that lacks the client's statement makes it there first",
            "P s1 SELECT 1",
            "server 2",
            "P s1 SELECT 2 => PARSE(own) cryoproxy_1; >P cryoproxy_1 'SELECT 1'; PARSE dup s1;"
                + " >P cryoproxy_1 'SELECT 1'"),
        life(
            "DEALLOCATE ALL forgets the client's names and the server's statements",
            "P s1 SELECT 1",
            "deallocate all",
            "names =>",
            "count => 0",
            "B s1 => BIND; >B s1",
            "P s1 SELECT 1 => PARSE cryoproxy_1 for s1; >P cryoproxy_1 'SELECT 1'"),
        life(
            "past the per-server bound the least recently used is closed before the next Parse",
            "bound 2",
            "P s1 SELECT 1",
            "P s2 SELECT 2",
            "B s1 => BIND cryoproxy_1; >B cryoproxy_1",
            "P s3 SELECT 3 => CLOSE(own); >C S cryoproxy_2; PARSE cryoproxy_3 for s3;"
                + " >P cryoproxy_3 'SELECT 3'",
            "count => 2",
            "names => s1,s2,s3",
            "B s2 => CLOSE(own); >C S cryoproxy_1; PARSE(own) cryoproxy_2; >P cryoproxy_2"
                + " 'SELECT 2'; BIND cryoproxy_2; >B cryoproxy_2"),
        life(
            "a statement whose plan went stale is closed before it is made again",
            "P s1 SELECT 1",
            "stale cryoproxy_1",
            "B s1 => CLOSE(own); >C S cryoproxy_1; PARSE(own) cryoproxy_1; >P cryoproxy_1"
                + " 'SELECT 1'; BIND cryoproxy_1; >B cryoproxy_1",
            "B s1 => BIND cryoproxy_1; >B cryoproxy_1"),
        life(
            "a named statement's transaction control and effects are noted at each Bind",
            "P s1 BEGIN => PARSE cryoproxy_1 for s1; >P cryoproxy_1 'BEGIN'",
            "B s1 => control 1; BIND cryoproxy_1; >B cryoproxy_1",
            "P s2 SET search_path TO a => PARSE cryoproxy_2 for s2;"
                + " >P cryoproxy_2 'SET search_path TO a'",
            "B s2 => effects; BIND cryoproxy_2; >B cryoproxy_2"),
        life(
            "the unnamed statement's effects are noted at its Parse, its control at each Bind",
            "P - SET search_path TO a => effects; PARSE; >P \"\" 'SET search_path TO a'",
            "B - => BIND; >B \"\"",
            "P - BEGIN => PARSE; >P \"\" 'BEGIN'",
            "B - => control 1; BIND; >B \"\""),
        life(
            "in session mode nothing is renamed and no server is needed",
            "session mode",
            "P s1 SELECT 1 => PARSE; >P s1 'SELECT 1'",
            "P s2 SET work_mem TO '8MB' => effects; PARSE; >P s2 'SET work_mem TO '8MB''",
            "B s1 => BIND; >B s1",
            "D s1 => DESCRIBE; >D S s1",
            "C s1 => CLOSE; >C S s1",
            "P - SELECT 1 => PARSE; >P \"\" 'SELECT 1'",
            "B - => BIND; >B \"\"",
            "C - => CLOSE; >C S \"\"",
            "names =>"));
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("lives")
  void lifeOfAClientStatement(String name, List<String> steps) {
    try (World world = new World()) {
      world.play(steps);
    }
  }

  @Test
  void aRenamedBindKeepsItsPortalParametersAndFormats() {
    try (World world = new World()) {
      world.run("P s1 SELECT $1");
      world.run("B s1");
      ByteBuf expected = bind("portal", "cryoproxy_1");
      String hex = ByteBufUtil.hexDump(expected);
      expected.release();
      assertThat(world.client.link.frames).last().isEqualTo(hex);
    }
  }

  // ---------------------------------------------------------------- the fixture

  /**
   * Proxy-wide statement names and two server connections, shared by two clients (a renamer and a
   * {@link Recorder} each). Server connections are real {@link PooledServer}s on an {@link
   * EmbeddedChannel}, whose prepared statements the renamer reads and changes; nothing is written
   * to their channels (the Recorder takes the frames).
   */
  static final class World implements AutoCloseable {
    final PreparedRegistry registry = registry();
    final List<EmbeddedChannel> channels = new ArrayList<>();
    final List<PooledServer> servers = new ArrayList<>();
    final List<Client> clients = new ArrayList<>();
    int bound = 10; // pool.prepared_per_server; RELOAD may change it
    int perClient = 10_000; // limits.max_client_prepared_statements
    Client client;

    World() {
      for (int i = 0; i < 2; i++) {
        EmbeddedChannel channel = new EmbeddedChannel();
        channels.add(channel);
        servers.add(pooledServer(channel));
      }
      for (int i = 0; i < 2; i++) {
        clients.add(new Client(true, servers.get(0)));
      }
      client = clients.get(0);
    }

    final class Client {
      final Recorder link = new Recorder();
      final StatementRenamer renamer;
      String context = ""; // search_path and role, as ClientSession.statementContext has them

      Client(boolean transactionMode, PooledServer server) {
        link.server = server;
        renamer =
            new StatementRenamer(
                transactionMode,
                registry,
                () -> bound,
                () -> perClient,
                ProxyMetrics.NONE,
                () -> context);
      }
    }

    void play(List<String> steps) {
      for (String step : steps) {
        String[] parts = step.split("=>", 2);
        String trace = run(parts[0].trim());
        if (parts.length == 2) {
          assertThat(trace).as(step).isEqualTo(parts[1].trim());
        }
      }
    }

    /** Runs one step; returns the trace it left, or for a question (names, has...) its answer. */
    String run(String command) {
      Recorder link = client.link;
      StatementRenamer renamer = client.renamer;
      link.trace.clear();
      String[] w = command.split(" ", 3);
      switch (w[0]) {
        case "P" -> renamer.parse(new Parse(name(w[1]), w[2], new int[0]).encode(ALLOC), link);
        case "B" -> renamer.bind(bind("portal", name(w[1])), link);
        case "D" -> renamer.describe(target(Target.DESCRIBE, Target.STATEMENT, w[1]), link);
        case "DP" -> renamer.describe(target(Target.DESCRIBE, Target.PORTAL, w[1]), link);
        case "C" -> renamer.close(target(Target.CLOSE, Target.STATEMENT, w[1]), link);
        case "CP" -> renamer.close(target(Target.CLOSE, Target.PORTAL, w[1]), link);
        case "Q" -> renamer.queried(link.server); // a simple Query went to the server
        case "S" -> link.replies.add(Kind.SYNC, true);
        case "E" -> link.replies.add(Kind.EXECUTE, true);
        case "poll" -> link.replies.poll(); // the head's reply arrived
        case "done" -> link.replies.clear(); // every reply arrived
        case "error" -> link.replies.skipToSync(link.server, renamer); // the head failed
        case "deallocate" -> { // as ClientSession does at CommandComplete "DEALLOCATE ALL"
          link.server.forgetAllPrepared();
          renamer.byName().clear();
        }
        case "stale" -> link.server.invalidatePrepared(w[1]);
        case "bound" -> bound = Integer.parseInt(w[1]);
        case "perclient" -> perClient = Integer.parseInt(w[1]);
        case "server" -> link.server = servers.get(Integer.parseInt(w[1]) - 1);
        case "client" -> client = clients.get(Integer.parseInt(w[1]) - 1);
        case "search_path" -> client.context = w[1];
        case "session" -> {
          client = new Client(false, null);
          clients.set(0, client);
        }
        case "names" -> {
          return String.join(",", new TreeSet<>(renamer.byName().keySet()));
        }
        case "has" -> { // refreshes the statement's place in the LRU order, as any use does
          return String.valueOf(link.server.hasPrepared(w[1]));
        }
        case "count" -> {
          return String.valueOf(link.server.preparedCount());
        }
        case "unnamed" -> {
          return "server " + unnamed(link.server.unnamed()) + ", client " + text(renamer);
        }
        case "queue" -> {
          return link.queued();
        }
        default -> throw new IllegalArgumentException("unknown step: " + command);
      }
      return String.join("; ", link.trace);
    }

    private static String name(String word) {
      return word.equals("-") ? "" : word;
    }

    private static ByteBuf target(char type, byte kind, String name) {
      return new Target(type, kind, name(name)).encode(ALLOC);
    }

    private static String unnamed(Object held) {
      if (held == null) {
        return "none";
      }
      if (held == PooledServer.UNKNOWN_UNNAMED) {
        return "unknown";
      }
      return "'" + ((UnnamedStatement) held).decode().query() + "'";
    }

    private static String text(StatementRenamer renamer) {
      Parse made = renamer.statement("");
      return made == null ? "none" : "'" + made.query() + "'";
    }

    @Override
    public void close() {
      for (EmbeddedChannel channel : channels) {
        // The pool's relay reports a closed connection to its pool; these belong to none.
        channel.pipeline().remove("pooled");
        assertThat(channel.finishAndReleaseAll())
            .as("frames written to a server channel")
            .isFalse();
      }
    }
  }

  /** The session as the renamer sees it: records what it is told, in order, and owns the frames. */
  static final class Recorder implements StatementRenamer.Link {
    final ReplyQueue replies = new ReplyQueue();
    final List<String> trace = new ArrayList<>();
    final List<String> frames = new ArrayList<>(); // hex dumps of every frame written
    PooledServer server;

    @Override
    public PooledServer server() {
      return server;
    }

    @Override
    public ByteBufAllocator alloc() {
      return ALLOC;
    }

    @Override
    public void write(ByteBuf frame) {
      try {
        frames.add(ByteBufUtil.hexDump(frame));
        trace.add(">" + written(frame));
      } finally {
        frame.release();
      }
    }

    @Override
    public void expect(Pending reply) {
      replies.add(reply);
      StringBuilder s = new StringBuilder(reply.kind.name());
      if (!reply.toClient) {
        s.append("(own)");
      }
      if (reply.statement != null) {
        s.append(' ').append(reply.statement);
      }
      if (reply.clientName != null) {
        s.append(" for ").append(reply.clientName);
      }
      if (reply.duplicateOf != null) {
        s.append(" dup ").append(reply.duplicateOf);
      }
      trace.add(s.toString());
    }

    @Override
    public void local(Pending reply) {
      replies.add(reply);
      trace.add("local " + reply.kind);
    }

    @Override
    public void noteEffects(SqlScan.Effects effects) {
      if (!effects.isNone()) {
        trace.add("effects");
      }
    }

    @Override
    public void noteControl(int bits) {
      if (bits != 0) {
        trace.add("control " + bits);
      }
    }

    @Override
    public void refuse(ErrorResponse error) {
      Pending failed = replies.add(Kind.EXECUTE, true);
      failed.error = error;
      trace.add("refuse " + error.sqlState());
    }

    /** The kinds still queued, oldest first; the queue is left as it was. */
    String queued() {
      List<Pending> all = new ArrayList<>();
      for (Pending p = replies.peek(); p != null; p = replies.peek()) {
        all.add(p);
        replies.poll();
      }
      all.forEach(replies::add);
      return String.join(",", all.stream().map(p -> p.kind.name()).toList());
    }

    private static String written(ByteBuf frame) {
      char type = (char) Frames.type(frame);
      return switch (type) {
        case Parse.TYPE -> {
          Parse parse = Parse.decode(Frames.body(frame));
          yield "P " + shown(parse.name()) + " '" + parse.query() + "'";
        }
        case Bind.TYPE -> "B " + shown(Bind.statement(frame));
        case Target.DESCRIBE, Target.CLOSE -> {
          Target target = Target.decode(type, Frames.body(frame));
          yield type + " " + (char) target.kind() + " " + shown(target.name());
        }
        default -> throw new AssertionError("unexpected frame '" + type + "'");
      };
    }

    private static String shown(String name) {
      return name.isEmpty() ? "\"\"" : name;
    }
  }

  /** A Bind with one text parameter ("42") and no format codes. */
  static ByteBuf bind(String portal, String statement) {
    ByteBuf buf = ALLOC.buffer();
    int at = Frames.begin(buf, Bind.TYPE);
    Frames.writeCString(buf, portal);
    Frames.writeCString(buf, statement);
    buf.writeShort(0); // parameter format codes
    buf.writeShort(1);
    buf.writeInt(2);
    buf.writeBytes("42".getBytes(US_ASCII));
    buf.writeShort(0); // result format codes
    return Frames.finish(buf, at);
  }

  /**
   * A pool's server connection on an EmbeddedChannel. Both constructors are package-private (only a
   * login makes a ServerConnection, only a pool a PooledServer), hence reflection; the pool is
   * null, which nothing the renamer calls touches.
   */
  static PooledServer pooledServer(EmbeddedChannel channel) {
    ServerConnection connection =
        construct(
            ServerConnection.class,
            new Class<?>[] {Channel.class, Endpoint.class, BackendKeyData.class, Map.class},
            channel,
            new Endpoint("127.0.0.1", 5432),
            new BackendKeyData(1, 1),
            Map.of());
    return construct(
        PooledServer.class,
        new Class<?>[] {ServerConnection.class, ServerPool.class},
        connection,
        null);
  }

  /** A registry whose names start at cryoproxy_1, as in a proxy just started. */
  static PreparedRegistry registry() {
    return construct(
        PreparedRegistry.class,
        new Class<?>[] {int.class, AtomicLong.class},
        100,
        new AtomicLong());
  }

  private static <T> T construct(Class<T> type, Class<?>[] parameters, Object... arguments) {
    try {
      Constructor<T> constructor = type.getDeclaredConstructor(parameters);
      constructor.setAccessible(true);
      return constructor.newInstance(arguments);
    } catch (ReflectiveOperationException e) {
      throw new AssertionError("cannot make a " + type.getSimpleName(), e);
    }
  }
}
