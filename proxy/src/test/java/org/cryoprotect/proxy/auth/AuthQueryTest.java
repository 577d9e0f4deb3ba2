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
}
