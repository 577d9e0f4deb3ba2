package org.cryoprotect.proxy.frontend;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** What the proxy runs to move a server connection from one client's settings to another's. */
class SessionSettingsTest {
  static final String FULL = "SET SESSION AUTHORIZATION DEFAULT; RESET ALL;";

  static Map<String, String> map(String... kv) {
    Map<String, String> m = new LinkedHashMap<>();
    for (int i = 0; i < kv.length; i += 2) {
      m.put(kv[i], kv[i + 1]);
    }
    return m;
  }

  @Test
  void anotherTokensClaimsSetOnlyTheClaims() {
    Map<String, String> a =
        map("application_name", "app", "request.jwt.claims", "{a}", "request.jwt.claims_sig", "1");
    Map<String, String> b =
        map("application_name", "app", "request.jwt.claims", "{b}", "request.jwt.claims_sig", "2");
    assertThat(SessionSettings.applySql(b, a))
        .isEqualTo(
            "SELECT pg_catalog.set_config(E'request.jwt.claims', E'{b}', false),"
                + " pg_catalog.set_config(E'request.jwt.claims_sig', E'2', false)");
  }

  @Test
  void unknownOrDifferentParametersStartAfresh() {
    Map<String, String> want = map("application_name", "app", "TimeZone", "UTC");
    assertThat(SessionSettings.applySql(want, null)).startsWith(FULL);
    // a parameter the connection has and the client does not: only RESET ALL removes it
    assertThat(SessionSettings.applySql(want, map("application_name", "app", "work_mem", "8MB")))
        .startsWith(FULL);
    assertThat(SessionSettings.applySql(map("TimeZone", "UTC"), want)).startsWith(FULL);
  }

  @Test
  void aRoleIsNeverChangedInPlaceNorAreRightsNeedingSettingsUnderIt() {
    Map<String, String> read = map("role", "service_read", "work_mem", "4MB");
    assertThat(SessionSettings.applySql(map("role", "other", "work_mem", "4MB"), read))
        .startsWith(FULL)
        .endsWith("pg_catalog.set_config(E'role', E'other', false)");
    // under a role, a server parameter may need the login role's rights: set before the role
    assertThat(SessionSettings.applySql(map("role", "service_read", "work_mem", "8MB"), read))
        .startsWith(FULL);
    // custom parameters need no rights
    assertThat(
            SessionSettings.applySql(
                map("role", "service_read", "work_mem", "4MB", "app.tenant", "b"),
                map("role", "service_read", "work_mem", "4MB", "app.tenant", "a")))
        .isEqualTo("SELECT pg_catalog.set_config(E'app.tenant', E'b', false)");
  }

  @Test
  void valuesAreEscapeStringLiterals() {
    assertThat(SessionSettings.applySql(map("x.y", "it's \\ here"), map("x.y", "z")))
        .isEqualTo("SELECT pg_catalog.set_config(E'x.y', E'it''s \\\\ here', false)");
  }
}
