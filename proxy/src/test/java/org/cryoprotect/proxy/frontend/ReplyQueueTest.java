package org.cryoprotect.proxy.frontend;

import static org.assertj.core.api.Assertions.assertThat;

import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.embedded.EmbeddedChannel;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.cryoprotect.proxy.frontend.Pending.Kind;
import org.cryoprotect.proxy.frontend.StatementRenamerTest.World;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.SqlState;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse.Severity;
import org.cryoprotect.proxy.protocol.backend.ReadyForQuery;
import org.junit.jupiter.api.Nested;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The replies a session still waits for, as tables. A queue is written as its kinds, oldest first,
 * separated by spaces; {@code KIND/own} is a reply for the proxy alone (toClient false).
 */
class ReplyQueueTest {
  private static final ErrorResponse LOST =
      ErrorResponse.of(Severity.ERROR, SqlState.CONNECTION_FAILURE, "server connection lost");

  /** The backend messages that end the replies to each kind ("Message Flow" in the docs). */
  private static final Map<Kind, String> ENDS = new EnumMap<>(Kind.class);

  static {
    ENDS.put(Kind.PARSE, "1"); // ParseComplete
    ENDS.put(Kind.BIND, "2"); // BindComplete
    ENDS.put(Kind.DESCRIBE, "Tn"); // after 't' for a statement: RowDescription or NoData
    ENDS.put(Kind.EXECUTE, "CIs"); // CommandComplete, EmptyQueryResponse, PortalSuspended
    ENDS.put(Kind.CLOSE, "3"); // CloseComplete
    for (Kind kind : List.of(Kind.SYNC, Kind.QUERY, Kind.FUNCTION)) {
      ENDS.put(kind, "Z");
    }
    for (Kind kind : List.of(Kind.INJECTED, Kind.APPLY, Kind.SNAPSHOT, Kind.LSN)) {
      ENDS.put(kind, "Z"); // the proxy's own simple queries
    }
    ENDS.put(Kind.LOCAL_PARSE_COMPLETE, ""); // the server sends nothing for these
    ENDS.put(Kind.LOCAL_CLOSE_COMPLETE, "");
  }

  /**
   * Every backend message a session can meet after login. 'E' ends nothing: an error is handled
   * before isLast is asked (serverError).
   */
  private static final String BACKEND_TYPES = "123tTnDCIsZENSAGHWdcV";

  @ParameterizedTest
  @EnumSource(Kind.class)
  void eachKindEndsAtItsLastMessageOnly(Kind kind) {
    assertThat(ENDS).as("the table has a row for %s", kind).containsKey(kind);
    for (char type : BACKEND_TYPES.toCharArray()) {
      assertThat(kind.isLast((byte) type))
          .as("%s ends at '%s'", kind, type)
          .isEqualTo(ENDS.get(kind).indexOf(type) >= 0);
    }
  }

  // ---------------------------------------------------------------- local answers

  /** What the client hears, in order, when each server reply arrives in turn. */
  @ParameterizedTest(name = "[{0}] -> {1}")
  @CsvSource(
      textBlock =
          """
          LOCAL_PARSE_COMPLETE,                             local:1
          PARSE LOCAL_PARSE_COMPLETE SYNC,                  server:PARSE local:1 server:SYNC
          LOCAL_PARSE_COMPLETE BIND LOCAL_CLOSE_COMPLETE,   local:1 server:BIND local:3
          BIND LOCAL_CLOSE_COMPLETE LOCAL_PARSE_COMPLETE,   server:BIND local:3 local:1
          INJECTED/own LOCAL_PARSE_COMPLETE,                server:INJECTED local:1
          PARSE BIND LOCAL_PARSE_COMPLETE DESCRIBE,         server:PARSE server:BIND local:1 \
          server:DESCRIBE
          """)
  void localAnswersWaitForTheServerRepliesQueuedBeforeThem(String queue, String heard) {
    ReplyQueue replies = queue(queue);
    List<String> order = new ArrayList<>();
    drainLocal(replies, order);
    while (!replies.isEmpty()) {
      order.add("server:" + replies.peek().kind);
      replies.poll();
      drainLocal(replies, order);
    }
    assertThat(String.join(" ", order)).isEqualTo(heard);
  }

  @Test
  void pollLocalLeavesAServerReplyAtTheHead() {
    ReplyQueue replies = new ReplyQueue();
    Pending parse = replies.add(Kind.PARSE, true);
    replies.add(Kind.LOCAL_PARSE_COMPLETE, true);
    assertThat(replies.pollLocal()).isNull();
    assertThat(replies.peek()).isSameAs(parse);
  }

  private static void drainLocal(ReplyQueue replies, List<String> order) {
    Kind local;
    while ((local = replies.pollLocal()) != null) {
      order.add(local == Kind.LOCAL_PARSE_COMPLETE ? "local:1" : "local:3");
    }
  }

  // ---------------------------------------------------------------- skipToSync

  /** The head failed: the server skips up to the Sync, which stays (its ReadyForQuery comes). */
  @ParameterizedTest(name = "[{0}] -> [{1}]")
  @CsvSource(
      textBlock =
          """
          EXECUTE,                                      ''
          DESCRIBE BIND EXECUTE,                        ''
          BIND EXECUTE SYNC,                            SYNC
          BIND LOCAL_CLOSE_COMPLETE EXECUTE SYNC QUERY, SYNC QUERY
          BIND CLOSE/own BIND EXECUTE SYNC,             SYNC
          BIND SYNC BIND EXECUTE SYNC,                  SYNC BIND EXECUTE SYNC
          """)
  void skipToSyncDropsEverythingBeforeTheSync(String queue, String left) {
    // No Parse in these rows: neither the server nor the renamer is asked anything.
    ReplyQueue replies = queue(queue);
    replies.skipToSync(null, null);
    assertThat(kinds(replies)).isEqualTo(left);
  }

  static Stream<Arguments> skippedParses() {
    return Stream.of(
        StatementRenamerTest.life(
            "a named Parse that failed frees the client's name and the server's record",
            "P s1 SELECT nope",
            "S",
            "error",
            "queue => SYNC",
            "names =>",
            "has cryoproxy_1 => false"),
        StatementRenamerTest.life(
            "a named Parse skipped behind a failed Bind is not made either",
            "B nope",
            "P s1 SELECT 1",
            "E",
            "S",
            "error",
            "queue => SYNC",
            "names =>",
            "has cryoproxy_1 => false"),
        StatementRenamerTest.life(
            "a named Parse answered before the failure stays",
            "P s1 SELECT 1",
            "B s1",
            "E",
            "S",
            "poll",
            "error",
            "queue => SYNC",
            "names => s1",
            "has cryoproxy_1 => true"),
        StatementRenamerTest.life(
            "the proxy's own Parse for a Bind failed: the client keeps its name, the server lacks"
                + " the statement and gets its Parse again",
            "P s1 SELECT 1",
            "done",
            "server 2",
            "B s1",
            "S",
            "queue => PARSE,BIND,SYNC",
            "error",
            "queue => SYNC",
            "names => s1",
            "B s1 => PARSE(own) cryoproxy_1; >P cryoproxy_1 'SELECT 1'; BIND cryoproxy_1;"
                + " >B cryoproxy_1"),
        StatementRenamerTest.life(
            "a duplicate Parse's 42P05 leaves the client's statement as it was",
            "P s1 SELECT 1",
            "done",
            "P s1 SELECT 2",
            "S",
            "error",
            "names => s1",
            "has cryoproxy_1 => true"),
        StatementRenamerTest.life(
            "a failed unnamed Parse leaves no unnamed statement (PostgreSQL drops the old first)",
            "P - SELECT 1",
            "S",
            "done",
            "P - SELECT nope",
            "S",
            "error",
            "unnamed => server none, client none"),
        StatementRenamerTest.life(
            "a skipped unnamed Parse: the client's is the old one again, the server's unknown",
            "P - SELECT 1",
            "S",
            "done",
            "B nope",
            "P - SELECT 2",
            "S",
            "error",
            "unnamed => server unknown, client 'SELECT 1'",
            "B - => PARSE(own); >P \"\" 'SELECT 1'; BIND; >B \"\""));
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("skippedParses")
  void skipToSyncTellsTheRenamerAndServerOfParsesThatNeverHappened(
      String name, List<String> steps) {
    try (World world = new World()) {
      world.play(steps);
    }
  }

  /**
   * Messages the proxy answered or wrote on its own inside a batch that then failed: PostgreSQL
   * skipped them, so what they did is undone. Each failed on 8124937, when skipToSync undid only
   * Parses (a later Parse of the name got 42P05, a Bind 26000).
   */
  @Nested
  class SkippedLocalAnswersAndCloses {
    @Test
    void aParseAnsweredLocallyThenSkippedMakesNoStatement() {
      try (World world = new World()) {
        world.play(
            List.of(
                "P s1 SELECT 1",
                "done",
                "B nope",
                "P s2 SELECT 1 => local LOCAL_PARSE_COMPLETE",
                "S",
                "error",
                "queue => SYNC",
                "names => s1")); // was s1,s2: a later Parse of s2 got 42P05
      }
    }

    @Test
    void aCloseAnsweredLocallyThenSkippedKeepsTheStatement() {
      try (World world = new World()) {
        world.play(
            List.of(
                "P s1 SELECT 1",
                "done",
                "B nope",
                "C s1 => local LOCAL_CLOSE_COMPLETE",
                "S",
                "error",
                "names => s1")); // was none: a later Bind of s1 got 26000
      }
    }

    @Test
    void anEvictionCloseSkippedLeavesTheStatementOnTheServer() {
      try (World world = new World()) {
        world.play(
            List.of(
                "bound 1",
                "P s1 SELECT 1",
                "done",
                "B nope",
                "P s2 SELECT 2 => CLOSE(own); >C S cryoproxy_1; PARSE cryoproxy_2 for s2;"
                    + " >P cryoproxy_2 'SELECT 2'",
                "S",
                "error",
                "done"));
        // The server still has cryoproxy_1: a Parse of it alone is answered 42P05.
        assertThat(world.run("B s1"))
            .satisfiesAnyOf(
                trace -> assertThat(trace).doesNotContain(">P cryoproxy_1"),
                trace -> assertThat(trace).startsWith("CLOSE(own); >C S cryoproxy_1; PARSE(own)"));
      }
    }

    @Test
    void aStaleStatementsCloseSkippedIsClosedBeforeTheNextParse() {
      try (World world = new World()) {
        world.play(
            List.of(
                "P s1 SELECT 1",
                "done",
                "stale cryoproxy_1",
                "B nope",
                "B s1 => CLOSE(own); >C S cryoproxy_1; PARSE(own) cryoproxy_1; >P cryoproxy_1"
                    + " 'SELECT 1'; BIND cryoproxy_1; >B cryoproxy_1",
                "S",
                "error",
                "done"));
        assertThat(world.run("B s1")).startsWith("CLOSE(own); >C S cryoproxy_1; PARSE(own)");
      }
    }
  }

  // ---------------------------------------------------------------- owesClient, awaits

  @ParameterizedTest(name = "[{0}] owes the client: {1}")
  @CsvSource(
      textBlock =
          """
          '',                                     false
          INJECTED/own,                           false
          APPLY/own SNAPSHOT/own LSN/own,         false
          SYNC/own,                               false
          CLOSE/own PARSE/own,                    false
          QUERY,                                  true
          LSN/own QUERY,                          true
          INJECTED/own EXECUTE SYNC,              true
          LOCAL_PARSE_COMPLETE,                   true
          EXECUTE SYNC/own,                       true
          """)
  void owesClientAndAwaits(String queue, boolean owes) {
    ReplyQueue replies = queue(queue);
    assertThat(replies.owesClient()).isEqualTo(owes);
    for (Kind kind : Kind.values()) {
      assertThat(replies.awaits(kind))
          .as("awaits %s", kind)
          .isEqualTo((" " + queue + " ").matches(".* " + kind + "(/own)? .*"));
    }
  }

  /** Which Execute an error of an earlier message of the batch stops (-1: none). */
  @ParameterizedTest(name = "[{0}] -> {1}")
  @CsvSource(
      textBlock =
          """
          '',                             -1
          PARSE BIND,                     -1
          BIND EXECUTE SYNC,              1
          PARSE BIND EXECUTE EXECUTE,     2
          BIND SYNC EXECUTE,              -1
          SYNC BIND EXECUTE,              -1
          QUERY EXECUTE,                  1
          """)
  void executeBeforeSync(String queue, int index) {
    List<Pending> added = new ArrayList<>();
    ReplyQueue replies = queue(queue, added);
    assertThat(added.indexOf(replies.executeBeforeSync())).isEqualTo(index);
  }

  // ---------------------------------------------------------------- answerLost

  /**
   * The server connection broke. Written: what reached the client, 'E' with its SQLSTATE and 'Z'
   * with its status. Skip: whether the client's batch must be skipped up to its Sync.
   */
  @ParameterizedTest(name = "[{0}] errorSent={1} midBatch={2} -> {4}")
  @CsvSource(
      textBlock =
          """
          # queue,                        errorSent, midBatch, status, written,                       skip
          '',                             false,     false,    I,      '',                            false
          INJECTED/own,                   false,     false,    I,      '',                            false
          # the client left mid-batch and the proxy sent the Sync
          SYNC/own,                       false,     false,    I,      '',                            false
          QUERY,                          false,     false,    I,      E08006 ZI,                     false
          QUERY,                          false,     false,    E,      E08006 ZE,                     false
          APPLY/own SNAPSHOT/own QUERY,   false,     false,    I,      E08006 ZI,                     false
          QUERY QUERY,                    false,     false,    I,      E08006 ZI E08006 ZI,           false
          FUNCTION,                       false,     false,    T,      E08006 ZT,                     false
          # the query's own error already reached the client
          QUERY,                          true,      false,    I,      ZI,                            false
          SYNC QUERY,                     true,      false,    I,      ZI E08006 ZI,                  false
          # extended: the batch mid-way (no Sync yet), then with its Sync
          PARSE BIND EXECUTE,             false,     true,     I,      E08006,                        true
          PARSE BIND EXECUTE SYNC,        false,     false,    I,      E08006 ZI,                     false
          BIND EXECUTE SYNC PARSE BIND,   false,     true,     E,      E08006 ZE E08006,              true
          BIND EXECUTE,                   true,      true,     I,      '',                            true
          # the batch so far was all answered, its Sync not sent yet
          '',                             false,     true,     I,      E08006,                        true
          '',                             true,      true,     I,      '',                            true
          """)
  void answerLost(
      String queue,
      boolean errorSent,
      boolean midBatch,
      char status,
      String written,
      boolean skip) {
    ReplyQueue replies = queue(queue);
    EmbeddedChannel channel = new EmbeddedChannel(new ChannelInboundHandlerAdapter());
    try {
      ChannelHandlerContext ctx = channel.pipeline().firstContext();
      boolean unsynced = replies.answerLost(ctx, LOST, errorSent, midBatch, (byte) status);
      channel.flush();
      assertThat(written(channel)).isEqualTo(written);
      assertThat(unsynced).isEqualTo(skip);
      assertThat(replies.isEmpty()).isTrue();
    } finally {
      channel.finishAndReleaseAll();
    }
  }

  private static String written(EmbeddedChannel channel) {
    List<String> out = new ArrayList<>();
    ByteBuf frame;
    while ((frame = channel.readOutbound()) != null) {
      try {
        byte type = Frames.type(frame);
        out.add(
            switch (type) {
              case ErrorResponse.TYPE -> "E" + ErrorResponse.sqlState(frame);
              case ReadyForQuery.TYPE -> "Z" + (char) ReadyForQuery.status(frame);
              default -> "?" + (char) type;
            });
      } finally {
        frame.release();
      }
    }
    return String.join(" ", out);
  }

  // ---------------------------------------------------------------- helpers

  private static ReplyQueue queue(String kinds) {
    return queue(kinds, new ArrayList<>());
  }

  private static ReplyQueue queue(String kinds, List<Pending> added) {
    ReplyQueue replies = new ReplyQueue();
    for (String word : kinds.split(" ")) {
      if (!word.isEmpty()) {
        boolean own = word.endsWith("/own");
        added.add(replies.add(Kind.valueOf(word.replace("/own", "")), !own));
      }
    }
    return replies;
  }

  private static String kinds(ReplyQueue replies) {
    List<String> left = new ArrayList<>();
    for (Pending p = replies.peek(); p != null; p = replies.peek()) {
      left.add(p.kind.name());
      replies.poll();
    }
    return String.join(" ", left);
  }
}
