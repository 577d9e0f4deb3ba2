package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;
import io.r2dbc.postgresql.PostgresqlConnectionConfiguration;
import io.r2dbc.postgresql.PostgresqlConnectionFactory;
import io.r2dbc.spi.Connection;
import jakarta.persistence.Entity;
import jakarta.persistence.GeneratedValue;
import jakarta.persistence.GenerationType;
import jakarta.persistence.Id;
import jakarta.persistence.Table;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.testing.ClientTools;
import org.cryoprotect.proxy.testing.Commands;
import org.cryoprotect.proxy.testing.PgTest;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.hibernate.SessionFactory;
import org.hibernate.cfg.Configuration;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * The clients Java shops use besides plain pgJDBC, each through transaction pooling with far more
 * client connections than server connections (a pool of 2), and each run the same way directly
 * against PostgreSQL: every answer must be the one asked for, and every transaction applied once.
 * r2dbc-postgresql caches named prepared statements per connection and pipelines; Hibernate over
 * HikariCP goes through pgJDBC's server-prepared statements with its own transactions; psycopg 3
 * and node-postgres prepare named statements of their own. (Vert.x's client is in {@link
 * UnnamedStatementIT}.)
 */
@PgTest
class ClientDriversIT {
  static final int ROWS = 100;
  static PgCluster pg;
  static RunningProxy proxy;

  @BeforeAll
  static void start(PgCluster cluster) throws Exception {
    pg = cluster;
    pg.createDatabase("drivers");
    pg.primary()
        .sql(
            "drivers",
            "CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance int NOT NULL);"
                + " INSERT INTO accounts SELECT i, 'owner-' || i, 0 FROM generate_series(1, "
                + ROWS
                + ") i");
    proxy =
        RunningProxy.start(
            "pool: { mode: transaction, size: 2, wait_timeout: 60s }\n"
                + RunningProxy.database("drivers", "drivers", "127.0.0.1", pg.primary().port()));
  }

  @AfterAll
  static void stop() {
    if (proxy != null) {
      proxy.close();
    }
  }

  static int port(String target) {
    return target.equals("direct") ? pg.primary().port() : proxy.port();
  }

  static long balances() {
    return Long.parseLong(
        pg.primary().sql("drivers", "SELECT sum(balance) FROM accounts").get(0).get(0));
  }

  // ---------------------------------------------------------------- r2dbc-postgresql

  /**
   * 40 r2dbc connections, each 60 parameterised reads (the driver prepares the statement once per
   * connection under its own name, then binds it) and 20 transactions of an UPDATE, all at once.
   */
  @Test
  void r2dbcPostgresqlThroughTransactionPooling() throws Exception {
    for (String target : List.of("direct", "proxy")) {
      long before = balances();
      long start = System.nanoTime();
      List<String> wrong = r2dbcRun(port(target), 40, 60, 20);
      long ms = (System.nanoTime() - start) / 1_000_000;
      long applied = balances() - before;
      System.out.printf(
          "[ClientDriversIT] r2dbc-postgresql %s: %d wrong answers, %d of %d updates applied,"
              + " %d ms%n",
          target, wrong.size(), applied, 40 * 20, ms);
      assertThat(wrong).as("r2dbc %s", target).isEmpty();
      assertThat(applied).as("r2dbc %s: each committed UPDATE applied once", target).isEqualTo(800);
    }
  }

  static List<String> r2dbcRun(int port, int connections, int reads, int updates) {
    PostgresqlConnectionFactory factory =
        new PostgresqlConnectionFactory(
            PostgresqlConnectionConfiguration.builder()
                .host("127.0.0.1")
                .port(port)
                .username(PgCluster.SUPERUSER)
                .password(PgCluster.SUPERUSER_PASSWORD)
                .database("drivers")
                .build());
    ConcurrentLinkedQueue<String> wrong = new ConcurrentLinkedQueue<>();
    Flux.range(0, connections)
        .flatMap(
            id ->
                Mono.usingWhen(
                    factory.create(),
                    c -> r2dbcReads(c, id, reads, wrong).then(r2dbcUpdates(c, id, updates)),
                    Connection::close),
            connections)
        .then()
        .block(Duration.ofSeconds(180));
    return new ArrayList<>(wrong).subList(0, Math.min(20, wrong.size()));
  }

  static Mono<Void> r2dbcReads(
      Connection c, int id, int reads, ConcurrentLinkedQueue<String> wrong) {
    return Flux.range(0, reads)
        .concatMap(
            q -> {
              int row = (id * 7 + q) % ROWS + 1;
              String asked = "c" + id + "q" + q;
              String expected = asked + ":owner-" + row;
              return Flux.from(
                      c.createStatement(
                              "SELECT $1::text || ':' || owner FROM accounts WHERE id = $2")
                          .bind("$1", asked)
                          .bind("$2", row)
                          .execute())
                  .flatMap(r -> r.map((rs, meta) -> rs.get(0, String.class)))
                  .collectList()
                  .doOnNext(
                      got -> {
                        if (!got.equals(List.of(expected))) {
                          wrong.add("asked " + expected + ", got " + got);
                        }
                      })
                  .onErrorResume(
                      e -> {
                        wrong.add(expected + ": " + e);
                        return Mono.empty();
                      });
            })
        .then();
  }

  static Mono<Void> r2dbcUpdates(Connection c, int id, int updates) {
    return Flux.range(0, updates)
        .concatMap(
            u ->
                Mono.from(c.beginTransaction())
                    .then(
                        Flux.from(
                                c.createStatement(
                                        "UPDATE accounts SET balance = balance + 1 WHERE id = $1")
                                    .bind("$1", (id * 13 + u) % ROWS + 1)
                                    .execute())
                            .flatMap(r -> r.getRowsUpdated())
                            .then())
                    .then(Mono.from(c.commitTransaction())))
        .then();
  }

  // ---------------------------------------------------------------- Hibernate over HikariCP

  /** An entity of Hibernate's own table. */
  @Entity(name = "Note")
  @Table(name = "hibernate_note")
  public static class Note {
    @Id
    @GeneratedValue(strategy = GenerationType.IDENTITY)
    Long id;

    String owner;
    int n;

    public Note() {}

    Note(String owner, int n) {
      this.owner = owner;
      this.n = n;
    }
  }

  /**
   * 16 application threads over a HikariCP pool of 16 (through the proxy: 2 server connections),
   * each 40 transactions: persist a note, then read its own notes back by query. Every read must
   * see exactly the thread's own committed notes.
   */
  @Test
  void hibernateOverHikariThroughTransactionPooling() throws Exception {
    for (String target : List.of("direct", "proxy")) {
      long start = System.nanoTime();
      List<String> wrong = hibernateRun(port(target), target, 16, 40);
      long ms = (System.nanoTime() - start) / 1_000_000;
      System.out.printf(
          "[ClientDriversIT] Hibernate %s: %d wrong answers, %d ms%n", target, wrong.size(), ms);
      assertThat(wrong).as("Hibernate %s", target).isEmpty();
    }
  }

  static SessionFactory hibernate(HikariDataSource ds) {
    Configuration config =
        new Configuration()
            .addAnnotatedClass(Note.class)
            .setProperty("hibernate.hbm2ddl.auto", "update")
            .setProperty("hibernate.connection.provider_disables_autocommit", "true");
    config.getProperties().put("hibernate.connection.datasource", ds);
    return config.buildSessionFactory();
  }

  static List<String> hibernateRun(int port, String tag, int threads, int each) throws Exception {
    HikariConfig hikari = new HikariConfig();
    hikari.setJdbcUrl("jdbc:postgresql://127.0.0.1:" + port + "/drivers");
    hikari.setUsername(PgCluster.SUPERUSER);
    hikari.setPassword(PgCluster.SUPERUSER_PASSWORD);
    hikari.setMaximumPoolSize(threads);
    hikari.setAutoCommit(false);
    ConcurrentLinkedQueue<String> wrong = new ConcurrentLinkedQueue<>();
    try (HikariDataSource ds = new HikariDataSource(hikari);
        SessionFactory sessions = hibernate(ds)) {
      ExecutorService pool = Executors.newFixedThreadPool(threads);
      AtomicInteger done = new AtomicInteger();
      List<Future<?>> runs = new ArrayList<>();
      for (int t = 0; t < threads; t++) {
        String owner = tag + "-" + t;
        runs.add(
            pool.submit(
                () -> {
                  for (int k = 0; k < each; k++) {
                    int n = k;
                    try {
                      sessions.inTransaction(s -> s.persist(new Note(owner, n)));
                      List<Integer> mine =
                          sessions.fromTransaction(
                              s ->
                                  s.createSelectionQuery(
                                          "select n from Note where owner = :o order by n",
                                          Integer.class)
                                      .setParameter("o", owner)
                                      .getResultList());
                      List<Integer> expected = new ArrayList<>();
                      for (int i = 0; i <= n; i++) {
                        expected.add(i);
                      }
                      if (!mine.equals(expected)) {
                        wrong.add(owner + " after " + n + ": " + mine);
                      }
                      done.incrementAndGet();
                    } catch (RuntimeException e) {
                      wrong.add(owner + " #" + n + ": " + e);
                    }
                  }
                  return null;
                }));
      }
      for (Future<?> run : runs) {
        run.get(180, TimeUnit.SECONDS);
      }
      pool.shutdown();
      assertThat(done.get() + wrong.size()).isGreaterThanOrEqualTo(threads * each);
    }
    return new ArrayList<>(wrong).subList(0, Math.min(20, wrong.size()));
  }

  // ---------------------------------------------------------------- psycopg and node-postgres

  /**
   * psycopg 3 (Debian's python3-psycopg, which .ci/run installs): 40 connections, each 60 reads
   * through the statements psycopg prepares under its own names, and 20 transactions.
   */
  @Test
  void psycopgThroughTransactionPooling() throws Exception {
    Path python = Path.of("/usr/bin/python3");
    Commands.Result probe =
        Files.isExecutable(python)
            ? Commands.run(
                Path.of("."),
                Duration.ofSeconds(30),
                null,
                List.of(python.toString(), "-c", "import psycopg"))
            : new Commands.Result(1, python + " missing");
    ClientTools.requireTool(
        probe.exit() == 0, "psycopg is needed (Debian python3-psycopg): " + probe.output());
    scriptRuns("psycopg", List.of(python.toString(), CLIENTS.resolve("psycopg_run.py").toString()));
  }

  /**
   * node-postgres (pinned in {@code src/test/clients/package-lock.json}, installed here with npm
   * ci): 40 clients, each 60 reads through a named prepared statement and 20 transactions.
   */
  @Test
  void nodePostgresThroughTransactionPooling() throws Exception {
    Optional<Path> npm = Commands.find("npm");
    Optional<Path> node = Commands.find("node");
    ClientTools.requireTool(
        npm.isPresent() && node.isPresent(), "node and npm are needed for node-postgres");
    Commands.Result install = Commands.npmCi(npm.get(), CLIENTS);
    assertThat(install.exit()).as("npm ci:\n%s", install.output()).isZero();
    scriptRuns(
        "node-postgres",
        List.of(node.get().toString(), CLIENTS.resolve("node_pg_run.js").toString()));
  }

  static final Path CLIENTS = Path.of("src/test/clients").toAbsolutePath();

  /** The script directly and through the proxy: no wrong answer, every update applied once. */
  static void scriptRuns(String name, List<String> command) throws Exception {
    for (String target : List.of("direct", "proxy")) {
      long before = balances();
      List<String> argv = new ArrayList<>(command);
      argv.addAll(List.of(String.valueOf(port(target)), "40", "60", "20"));
      long start = System.nanoTime();
      Commands.Result r = Commands.run(CLIENTS, Duration.ofMinutes(3), null, argv);
      long ms = (System.nanoTime() - start) / 1_000_000;
      assertThat(r.exit()).as("%s %s:\n%s", name, target, r.output()).isZero();
      String json =
          r.output().lines().filter(l -> l.startsWith("{")).reduce((a, b) -> b).orElse("{}");
      JsonNode result = new ObjectMapper().readTree(json);
      long applied = balances() - before;
      System.out.printf(
          "[ClientDriversIT] %s %s: %d wrong answers, %d of %d updates applied, %d ms%n",
          name, target, result.path("count").asInt(-1), applied, 40 * 20, ms);
      assertThat(result.path("count").asInt(-1)).as("%s %s: %s", name, target, json).isZero();
      assertThat(applied)
          .as("%s %s: each committed UPDATE applied once", name, target)
          .isEqualTo(800);
    }
  }
}
