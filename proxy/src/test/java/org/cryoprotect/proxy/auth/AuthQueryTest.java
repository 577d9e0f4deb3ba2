package org.cryoprotect.proxy.auth;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executor;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/** Only the parts that need no database; the query itself runs in an integration test. */
class AuthQueryTest {
  @Test
  void rewritesPostgresParameterForJdbc() {
    assertThat(AuthQuery.toJdbc(AuthQuery.DEFAULT_QUERY))
        .isEqualTo("SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = ?");
    assertThat(AuthQuery.toJdbc("SELECT * FROM pgbouncer.get_auth($1)"))
        .isEqualTo("SELECT * FROM pgbouncer.get_auth(?)");
  }

  @Test
  void rejectsQueriesWithoutExactlyOneUserParameter() {
    assertThatThrownBy(() -> AuthQuery.toJdbc("SELECT usename, passwd FROM pg_shadow"))
        .isInstanceOf(IllegalArgumentException.class);
    assertThatThrownBy(() -> AuthQuery.toJdbc("SELECT $1, $2"))
        .isInstanceOf(IllegalArgumentException.class);
    assertThatThrownBy(() -> AuthQuery.toJdbc("SELECT $10"))
        .isInstanceOf(IllegalArgumentException.class);
    assertThatThrownBy(() -> AuthQuery.toJdbc("SELECT $1, $1"))
        .isInstanceOf(IllegalArgumentException.class);
  }

  @Test
  void runsOnTheGivenExecutorAndFailsAfterClose() {
    AtomicInteger submitted = new AtomicInteger();
    Executor executor =
        task -> {
          submitted.incrementAndGet();
          new Thread(task, "control-plane").start();
        };
    AuthQuery query =
        new AuthQuery("jdbc:postgresql://127.0.0.1:1/none", "u", null, null, executor);
    query.close();

    assertThatThrownBy(() -> query.lookup("alice").get())
        .isInstanceOf(ExecutionException.class)
        .hasRootCauseInstanceOf(IllegalStateException.class);
    assertThat(submitted).hasValue(1);
    assertThat(query.toString()).doesNotContain("jdbc");
  }

  @Test
  void lookUpsPastTheBoundAreRefusedAtOnceAndMakeRoomWhenOthersEnd() throws Exception {
    java.util.List<Runnable> held = new java.util.ArrayList<>();
    Executor holding = held::add; // nothing runs until the test says so
    AuthQuery query = new AuthQuery("jdbc:postgresql://127.0.0.1:1/none", "u", null, null, holding);
    java.util.List<java.util.concurrent.CompletableFuture<?>> waiting = new java.util.ArrayList<>();
    for (int i = 0; i < AuthQuery.MAX_PENDING; i++) {
      waiting.add(query.lookup("user" + i));
    }
    assertThat(waiting).noneMatch(java.util.concurrent.CompletableFuture::isDone);
    assertThat(query.lookup("one too many"))
        .isCompletedExceptionally()
        .failsWithin(java.time.Duration.ZERO)
        .withThrowableOfType(ExecutionException.class)
        .withCauseInstanceOf(AuthQuery.Busy.class);
    assertThat(held).hasSize(AuthQuery.MAX_PENDING);
    query.close();
    held.get(0).run(); // fails (closed) and so ends: one place is free again
    assertThat(waiting.get(0)).isCompletedExceptionally();
    assertThat(query.lookup("next")).isNotCompletedExceptionally();
    assertThat(held).hasSize(AuthQuery.MAX_PENDING + 1);
  }
}
