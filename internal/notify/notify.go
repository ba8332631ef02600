// Package notify keeps notification records (seed 004's NotificationMessage)
// in the tenant's notifications table. Domain packages record them inside
// the transaction of the change that caused them; delivery is a later
// capability that sends the pending ones.
package notify

import (
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/store"
)

// Notification is one message to a tenant.
type Notification struct {
	TenantID      string `gorm:"primaryKey"`
	ID            string `gorm:"primaryKey"`
	RecipientType string
	RecipientID   string
	Channel       string
	Subject       string
	Content       string
	Priority      string // low | normal | high | urgent
	Status        string
	Metadata      store.JSON
	CreatedAt     time.Time
}

// TableName maps notifications to their table.
func (Notification) TableName() string { return "notifications" }

// TenantOwned marks notifications as tenant data.
func (Notification) TenantOwned() {}

// Message is what a caller says; the rest is filled in.
type Message struct {
	TenantID string // the tenant told (its owners, by email, once delivery exists)
	Subject  string
	Content  string
	Priority string
	Metadata map[string]any
}

// RecordTx writes a pending email notification to the tenant inside tx.
func RecordTx(tx *gorm.DB, m Message, now time.Time) error {
	n := Notification{TenantID: m.TenantID, ID: uuid.Must(uuid.NewV7()).String(), RecipientType: "tenant", RecipientID: m.TenantID,
		Channel: "email", Subject: m.Subject, Content: m.Content, Priority: m.Priority, Status: "pending",
		Metadata: store.JSON(store.MustJSON(m.Metadata)), CreatedAt: now}
	return tx.Create(&n).Error
}
