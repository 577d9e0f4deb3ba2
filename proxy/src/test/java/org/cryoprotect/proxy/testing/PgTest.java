package org.cryoprotect.proxy.testing;

import java.lang.annotation.ElementType;
import java.lang.annotation.Inherited;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;
import org.cryoprotect.embedded.PgCluster;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * One {@link PgCluster} for the annotated test class, injected into any {@code PgCluster} parameter
 * (constructor, lifecycle or test method) and closed after the last test.
 *
 * <pre>{@code
 * @PgTest(replicas = 1, auth = "scram-sha-256")
 * class RoutingIT {
 *   @Test
 *   void readsFromReplica(PgCluster pg) throws Exception { ... }
 * }
 * }</pre>
 */
@Target(ElementType.TYPE)
@Retention(RetentionPolicy.RUNTIME)
@Inherited
@ExtendWith(PgExtension.class)
public @interface PgTest {
  int replicas() default 0;

  boolean tls() default false;

  /** trust, password, md5 or scram-sha-256. */
  String auth() default "trust";

  /** Extra postgresql.conf lines as {@code "name=value"}. */
  String[] settings() default {};
}
